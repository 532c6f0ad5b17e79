"""A drum bar as arrays: the GM kit reduced to nine pieces, 16 steps, hits + velocities + micro-timing offsets.

Pure numpy (no torch, no MIDI I/O): the one place that defines the bar layout and the conditioning features
computed from a bar (the tap/accent pattern, density, mean velocity), shared by training, evaluation and the
live drummer, so the model is always conditioned on the same figures it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEPS = 16  # 16th-note steps of a 4/4 bar; triplets and swing live in the offsets (up to half a step each way)
PIECES = ("kick", "snare", "hihat_closed", "hihat_open", "tom_low", "tom_mid", "tom_high", "crash", "ride")
N_PIECES = len(PIECES)
# the note we play for each piece (General MIDI percussion, channel 10)
PIECE_NOTES = (36, 38, 42, 46, 45, 48, 50, 49, 51)
# every GM / Roland TD-11 drum note of the Groove MIDI Dataset, folded onto one of the nine pieces
NOTE_TO_PIECE = {
    36: 0, 35: 0,
    38: 1, 40: 1, 37: 1, 39: 1,
    42: 2, 22: 2, 44: 2,
    46: 3, 26: 3,
    43: 4, 58: 4, 41: 4,
    47: 5, 45: 5,
    50: 6, 48: 6,
    49: 7, 55: 7, 57: 7, 52: 7,
    51: 8, 59: 8, 53: 8,
}
STYLES = ("rock", "funk", "jazz", "latin", "hiphop", "soul", "afrocuban", "punk", "neworleans", "country", "pop",
          "reggae", "other")
# Groove styles with too few performances for a class of their own
OTHER_STYLES = ("gospel", "afrobeat", "dance", "blues", "highlife", "middleeastern")
DENSITY_FULL = 32.0  # hits per bar that count as density 1.0 (a busy 16th-note groove)
# metrical weight of each 16th step in 4/4 (Longuet-Higgins & Lee): bar 0, half bar -1, beats -2, 8ths -3, 16ths -4
METRIC_WEIGHT = np.array([0, -4, -3, -4, -2, -4, -3, -4, -1, -4, -3, -4, -2, -4, -3, -4], dtype=np.float32)


def style_index(name: str) -> int:
    """The class of a Groove style tag ('funk/groove1', 'latin-samba', 'gospel' -> 'other')."""
    top = name.split("/")[0].split("-")[0].strip().lower()
    if top in STYLES:
        return STYLES.index(top)
    return STYLES.index("other")


@dataclass(frozen=True)
class Bar:
    """One bar: hits (P, S) in {0,1}, velocity (P, S) in [0,1], offset (P, S) in steps [-0.5, 0.5]."""

    hits: np.ndarray
    velocity: np.ndarray
    offset: np.ndarray

    @staticmethod
    def empty() -> Bar:
        z = np.zeros((N_PIECES, STEPS), dtype=np.float32)
        return Bar(z.copy(), z.copy(), z.copy())

    def hit_list(self) -> list[tuple[int, int, float, float]]:
        """(piece, step, velocity 0..1, offset in steps) of every hit, in time order."""
        pieces, steps = np.nonzero(self.hits > 0.5)
        out = [(int(p), int(s), float(self.velocity[p, s]), float(self.offset[p, s]))
               for p, s in zip(pieces, steps, strict=True)]
        return sorted(out, key=lambda h: (h[1] + h[3], h[0]))


def bars_from_hits(hits: list[tuple[float, int, int]], steps_total: int) -> list[Bar]:
    """Grid (time in 16th steps, piece, velocity 1..127) hits into bars; the loudest wins a shared cell."""
    n_bars = max(1, -(-steps_total // STEPS))
    h = np.zeros((n_bars, N_PIECES, STEPS), dtype=np.float32)
    v = np.zeros_like(h)
    o = np.zeros_like(h)
    for t, piece, vel in hits:
        step = int(np.floor(t + 0.5))
        if step < 0 or step >= n_bars * STEPS:
            continue
        b, s = divmod(step, STEPS)
        vel01 = min(max(vel, 1), 127) / 127.0
        if vel01 > v[b, piece, s]:
            h[b, piece, s] = 1.0
            v[b, piece, s] = vel01
            o[b, piece, s] = float(np.clip(t - step, -0.5, 0.5))
    return [Bar(h[i], v[i], o[i]) for i in range(n_bars)]


def taps(hits: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """The tap pattern of bars (..., P, S) -> (..., S): the loudest velocity at each step, 0 where none."""
    return (hits * velocity).max(axis=-2)


def density(hits: np.ndarray) -> np.ndarray:
    """Hits per bar scaled so that DENSITY_FULL hits is 1.0 (clipped): (..., P, S) -> (...)."""
    return np.clip(hits.sum(axis=(-2, -1)) / DENSITY_FULL, 0.0, 1.0)


def mean_velocity(hits: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """Mean velocity of the hits of each bar (0 for an empty bar): (..., P, S) -> (...)."""
    n = hits.sum(axis=(-2, -1))
    return np.where(n > 0, (hits * velocity).sum(axis=(-2, -1)) / np.maximum(n, 1), 0.0)


def syncopation(hits: np.ndarray) -> np.ndarray:
    """Longuet-Higgins & Lee syncopation of the onset pattern (all pieces), wrapping at the bar: (..., P, S) -> (...).

    A note on a weak step followed by silence on the next stronger step scores the weight difference.
    """
    onset = hits.max(axis=-2) > 0.5  # (..., S)
    score = np.zeros(onset.shape[:-1], dtype=np.float32)
    for s in range(STEPS):
        # the next step that is metrically stronger than s
        nxt = next((t for t in range(s + 1, s + STEPS) if METRIC_WEIGHT[t % STEPS] > METRIC_WEIGHT[s]), None)
        if nxt is None:
            continue
        rest = ~onset[..., nxt % STEPS]
        score += (onset[..., s] & rest) * (METRIC_WEIGHT[nxt % STEPS] - METRIC_WEIGHT[s])
    return score


def timing_spread(hits: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Standard deviation of the micro-timing offsets (in steps) of the hits of each bar: (..., P, S) -> (...)."""
    n = np.maximum(hits.sum(axis=(-2, -1)), 1)
    mean = (hits * offset).sum(axis=(-2, -1)) / n
    var = (hits * (offset - mean[..., None, None]) ** 2).sum(axis=(-2, -1)) / n
    return np.sqrt(var)


def accents(tap: np.ndarray) -> np.ndarray:
    """The accented steps of tap patterns (..., S): onsets at least as loud as the pattern's mean onset."""
    on = tap > 0
    n = np.maximum(on.sum(axis=-1, keepdims=True), 1)
    mean = (tap * on).sum(axis=-1, keepdims=True) / n
    return on & (tap >= mean)
