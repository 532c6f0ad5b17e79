"""How the player articulates, apart from what they play: a played phrase read as notation, and the answer played back
with the player's touch.

Scores (our training data) write a note's length as its place in the rhythm: eighths that follow each other last an
eighth. Players hold notes for part of that: detached eighths sound for 60-90 % of it. Fed to the model as they are,
such lengths are rhythms it seldom saw (5/12 of a beat), which pulls its answers out of the style (sparse lines,
odd chords). ``gate`` measures the player's share of each note's room (the time to the next onset), ``notated``
lengthens the phrase's notes by it, and the answer's lengths are multiplied back by it (``played``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

LEGATO = 0.97  # a phrase held for at least this share of its notes' room is read as written (scores: 1.0)
MIN_GATE = 0.3  # below this the player plays rests, not short notes: their rhythm stays as played
MIN_NOTES = 3  # notes with a next one within a beat needed to measure a touch


def _next_onsets(notes: Sequence[Sequence[int]]) -> dict[int, int]:
    """Each onset of the phrase -> the next onset after it (the last has none)."""
    onsets = sorted({int(n[2]) for n in notes})
    return dict(zip(onsets, onsets[1:], strict=False))


def gate(notes: Sequence[Sequence[int]], ppq: int) -> float:
    """The median share of its room (onset to the next onset, at most a beat) that a note sounds for, over the
    phrase's notes that have a next one within a beat; 1.0 (read as written) when it holds them, when half of
    them or more fill their room (a score: its short notes are written rests), or when fewer than MIN_NOTES
    tell."""
    nxt = _next_onsets(notes)
    shares = [int(n[3]) / (nxt[int(n[2])] - int(n[2])) for n in notes
              if int(n[2]) in nxt and nxt[int(n[2])] - int(n[2]) <= ppq + ppq // 8]  # a beat, played loosely
    if len(shares) < MIN_NOTES or sum(x >= LEGATO for x in shares) * 2 >= len(shares):
        return 1.0  # too little to tell, or held to the next note as often as not: as written (a written rest)
    share = statistics.median(shares)
    return 1.0 if share >= LEGATO or share < MIN_GATE else share


def notated(notes: Sequence[Sequence[int]], share: float) -> list[tuple[int, ...]]:
    """(pitch, velocity, start, duration) with each duration divided by ``share``, never past the next onset
    (nor, for the last notes, longer than divided); the phrase as it would be written."""
    if share >= 1.0:
        return [tuple(int(x) for x in n[:4]) for n in notes]
    nxt = _next_onsets(notes)
    out = []
    for n in notes:
        pitch, velocity, start, duration = (int(x) for x in n[:4])
        written = round(duration / share)
        if start in nxt:
            written = min(written, max(duration, nxt[start] - start))
        out.append((pitch, velocity, start, written))
    return out


def played(duration_ticks: int, share: float) -> int:
    """A written length sounded with the player's touch (at least one tick)."""
    return max(1, round(duration_ticks * share))


CONSISTENT = 0.8  # onsets whose phases on a grid agree this well (mean resultant length) share one offset


def grid_offset(notes: Sequence[Sequence[int]], ppq: int) -> int:
    """Ticks to add to the phrase's onsets to put them on the 16th or the 8th-triplet grid, where the player keeps
    one steady offset from it (playing ahead of or behind the session's clock, or free of it): at most half a grid
    step, 0 where the onsets agree on no offset (the player's timing is their rhythm)."""
    onsets = sorted({int(n[2]) for n in notes})
    if len(onsets) < 3:
        return 0
    best = (0.0, 0)
    for step in (ppq / 4, ppq / 3):
        angles = [2 * math.pi * (t % step) / step for t in onsets]
        x = sum(math.cos(a) for a in angles) / len(angles)
        y = sum(math.sin(a) for a in angles) / len(angles)
        agreement = math.hypot(x, y)
        if agreement >= CONSISTENT and agreement > best[0] + 0.05:
            best = (agreement, -round(math.atan2(y, x) / (2 * math.pi) * step))
    return best[1]


def read_as_written(notes: Sequence[Sequence[int]], ppq: int) -> tuple[list[tuple[int, ...]], float]:
    """A played phrase as the models read it: its notes lengthened by the player's touch and moved onto the grid
    by a steady offset (never before tick 0); and the touch, to play the answer back with (``played``)."""
    touch = gate(notes, ppq)
    offset = grid_offset(notes, ppq)
    return [(p, v, max(0, t + offset), d) for p, v, t, d in notated(notes, touch)], touch
