"""How close a continuation is to the tune's real next bars: the figures of ``companion eval continuation``.

Pure functions over notes ``(pitch, velocity, onset_ticks, duration_ticks)``. Per tune: histogram overlap
(sum of the bin-wise minimum, 1 = identical) with the true continuation for pitch classes, melodic intervals
and durations; share of notes in the tune's key; share of the answer's 4-note pitch sequences copied from the
prompt; notes per bar; whether the answer's onsets keep the prompt's metric grid (the places in the beat the
prompt's onsets use: a jig's answer with 16ths or a duple feel leaves it). Over tunes: means with a
bootstrap interval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.continuation.evaluate import copied_ngram_fraction, histogram, in_key_ratio, intervals
from models.data.pieces import Piece

NoteTuple = tuple[int, int, int, int]
GRID_KEPT_SHARE = 0.9  # an answer keeps the prompt's grid when at least this share of its onsets sit on it
OVERLAPS = ("pitch_class_overlap", "interval_overlap", "duration_overlap")


@dataclass(frozen=True)
class Tune:
    """One evaluation case: the first bars of a tune (the prompt) and the bars that follow (the truth).

    Onsets of ``prompt`` count from the phrase's first bar line (a pickup sits at the end of that bar);
    onsets of ``truth`` from the answer's start, ``answer_start_ticks`` after the phrase's bar line.
    """

    piece_id: str
    style: str
    meter: str
    key: tuple[int, str]
    bar_ticks: int
    answer_start_ticks: int
    prompt: tuple[NoteTuple, ...]
    truth: tuple[NoteTuple, ...]


def tune_from_piece(piece: Piece, bar_steps: int, step_ticks: int, prompt_bars: int = 4,
                    answer_bars: int = 4) -> Tune | None:
    """The prompt (first ``prompt_bars`` full bars, pickup included) and truth of a piece; None if too short.

    A first bar whose first note is not on its bar line is a pickup: the full bars start after it.
    """
    if piece.key is None or len(piece.notes) == 0:
        return None
    notes = piece.notes
    bar_of = notes[:, 0] // bar_steps
    first = 1 if int(notes[:, 0].min()) % bar_steps and int(bar_of.min()) == 0 else int(bar_of.min())
    cut, end = first + prompt_bars, first + prompt_bars + answer_bars
    if int(bar_of.max()) < end - 1:
        return None
    origin = int(bar_of.min()) * bar_steps  # the phrase's bar line
    as_ticks = [(int(n[2]), int(n[3]), (int(n[0]) - origin) * step_ticks, int(n[1]) * step_ticks) for n in notes]
    prompt = tuple(n for n, b in zip(as_ticks, bar_of, strict=True) if b < cut)
    start = (cut * bar_steps - origin) * step_ticks
    truth = tuple((p, v, s - start, d) for (p, v, s, d), b in zip(as_ticks, bar_of, strict=True) if cut <= b < end)
    if len(prompt) < 8 or len(truth) < 4:
        return None
    return Tune(piece.piece_id, piece.style, piece.meter, piece.key, bar_steps * step_ticks, start, prompt, truth)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Histogram overlap: sum of bin-wise minima of two distributions (1 identical, 0 disjoint)."""
    return float(np.minimum(a, b).sum())


def beat_grid(notes: Sequence[NoteTuple], meter: str, ppq: int, cover: float = 0.95) -> tuple[int, frozenset[int]]:
    """The prompt's metric grid: its beat (a dotted quarter in 6/8, 9/8, 12/8) and the places in the beat where
    its onsets fall, the most used first, as many as cover ``cover`` of them (a jig: the beat's three 8ths)."""
    num, den = (int(x) for x in meter.split("/"))
    compound = den == 8 and num % 3 == 0 and num > 3
    beat = 3 * ppq // 2 if compound else 4 * ppq // den
    counts = Counter(n[2] % beat for n in notes)
    kept: set[int] = set()
    covered = 0
    for place, count in counts.most_common():
        if covered >= cover * len(notes):
            break
        kept.add(place)
        covered += count
    return beat, frozenset(kept)


def on_grid_share(notes: Sequence[NoteTuple], grid: tuple[int, frozenset[int]]) -> float:
    beat, places = grid
    return sum(1 for n in notes if n[2] % beat in places) / len(notes) if notes else 1.0


def _onsets_on_step(notes: Sequence[NoteTuple], step: int) -> list[NoteTuple]:
    return [(p, v, round(t / step) * step, d) for p, v, t, d in notes]


def _on_step(ticks: int, step: int) -> int:
    return max(step, round(ticks / step) * step)


def tune_figures(answer: Sequence[NoteTuple], tune: Tune, ppq: int = 480) -> dict[str, float]:
    """The figures of one answer against its tune's truth and prompt. Lengths are compared, and the prompt's grid
    read, to the nearest step of the model's grid (a 12th of a beat; written tunes sit on it already): a played
    prompt's loose onsets and a played answer's lengths count where they belong."""
    tonic = tune.key[0]
    step = ppq // 12
    answer_lengths = [_on_step(n[3], step) for n in answer]
    truth_lengths = [_on_step(n[3], step) for n in tune.truth]
    durations = sorted(set(truth_lengths) | set(answer_lengths))
    answer_bars = max(1, -(-max((n[2] for n in tune.truth), default=0) // tune.bar_ticks))
    bars = max(answer_bars, -(-max((n[2] + 1 for n in answer), default=1) // tune.bar_ticks))
    grid = beat_grid(_onsets_on_step(tune.prompt, step), tune.meter, ppq)
    return {
        "pitch_class_overlap": overlap(histogram([(n[0] - tonic) % 12 for n in answer], range(12)),
                                       histogram([(n[0] - tonic) % 12 for n in tune.truth], range(12))),
        "interval_overlap": overlap(histogram(intervals(answer), range(-12, 13)),
                                    histogram(intervals(tune.truth), range(-12, 13))),
        "duration_overlap": overlap(histogram(answer_lengths, durations), histogram(truth_lengths, durations)),
        "in_key": in_key_ratio(answer, tune.key),
        "copied_4grams": copied_ngram_fraction(answer, tune.prompt),
        "notes_per_bar": len(answer) / bars,
        "truth_notes_per_bar": len(tune.truth) / bars,
        "grid_kept": float(bool(answer) and on_grid_share(_onsets_on_step(answer, step), grid) >= GRID_KEPT_SHARE),
        "empty": float(not answer),
    }


def bootstrap_interval(values: Sequence[float], seed: int = 0, rounds: int = 1000,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (tunes resampled with replacement)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(rounds, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def summarise(rows: Sequence[dict[str, float]], tonal: Sequence[bool]) -> dict[str, object]:
    """Mean and bootstrap interval of every figure over the tunes; 'in key' over tonal prompts only."""
    out: dict[str, object] = {"tunes": len(rows)}
    for name in rows[0] if rows else ():
        values = [r[name] for r, t in zip(rows, tonal, strict=True) if t or name != "in_key"]
        if not values:  # no tonal prompt: no 'in key' figure
            out[name] = {"mean": None, "ci95": None}
            continue
        lo, hi = bootstrap_interval(values)
        out[name] = {"mean": round(float(np.mean(values)), 4), "ci95": [round(lo, 4), round(hi, 4)]}
    return out


def paired_difference(a: Sequence[dict[str, float]], b: Sequence[dict[str, float]],
                      name: str) -> dict[str, object]:
    """Mean of (a - b) for one figure over the same tunes, with its bootstrap interval."""
    diff = [x[name] - y[name] for x, y in zip(a, b, strict=True)]
    lo, hi = bootstrap_interval(diff)
    return {"mean": round(float(np.mean(diff)), 4), "ci95": [round(lo, 4), round(hi, 4)]}


Answerer = Callable[[Tune, int], list[NoteTuple]]  # (tune, seed) -> answer notes, onsets from the answer's start
