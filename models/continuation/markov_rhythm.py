"""Where the Markov responder's notes fall: the rhythm plan of an answer, before any pitch is chosen.

The Continuator lets an answer take the rhythm of the phrase it answers. Here, when the phrase has whole bars,
each bar of the answer takes the rhythm (onsets as played, durations, velocities) of one of the phrase's bars,
in order (bar k of the answer: the phrase's bar k, cycling; the answer's last bar: the phrase's last), so a
jig's answer keeps the jig's lilt and a tune's cadence lands where the tune's does. A phrase shorter than a bar
(or all pickup) gives a walk on its metric grid instead: from each place in the beat, a step the player took
from there. Pure stdlib; onsets in ticks from the answer's start, which is a bar line.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

Line = Sequence[tuple[int, int, int, int]]  # the top voice: (pitch, velocity, onset_ticks, duration_ticks)


@dataclass(frozen=True, slots=True)
class Slot:
    """One onset of the answer: when, how long, how loud, where in the bar, and what the player played there."""

    onset_ticks: int
    duration_ticks: int
    velocity: int
    bar_place_ticks: int  # the onset's place in its bar (the metric position the pitch model weighs)
    template_pitch: int | None  # the pitch at this place of the phrase's bar the rhythm comes from (None: walk)


def full_bars(line: Line, bar_ticks: int) -> list[int]:
    """The phrase's bars that can lend their rhythm: not a pickup, and not a last bar the phrase stops early in.

    A first bar whose first onset lies in its second half is a pickup; the last bar counts when its notes
    sound into its last quarter (a held final note is part of the rhythm, a phrase that just stops is not).
    """
    if not line or bar_ticks <= 0:
        return []
    bars = sorted({n[2] // bar_ticks for n in line})
    first_onset = min(n[2] for n in line)
    last_end = max(n[2] + n[3] for n in line)
    out = []
    for b in bars:
        if b == bars[0] and first_onset - b * bar_ticks > bar_ticks // 2:
            continue
        if b == bars[-1] and last_end < (b + 1) * bar_ticks - bar_ticks // 4:
            continue
        out.append(b)
    return out


def template_bar(bars: list[int], k: int, count: int) -> int:
    """Which of the phrase's ``bars`` the answer's bar k (of ``count``) follows: in order, cycling; the answer's
    last bar the phrase's last, so the cadence lands where the tune's does."""
    return bars[-1] if k == count - 1 and count > 1 else bars[k % len(bars)]


def template_plan(line: Line, bars: list[int], length_ticks: int, bar_ticks: int, too_short: int) -> list[Slot]:
    """The answer's onsets bar by bar from the phrase's ``bars`` (answer bar k: bars[k % n], its last: bars[-1]);
    a bar that opens with a rest still has the answer's first note on the answer's start (a late player, a clock
    not yet locked, would otherwise make the answer late by as much)."""
    by_bar: dict[int, list[tuple[int, int, int, int]]] = {b: [] for b in bars}
    for n in line:
        if n[2] // bar_ticks in by_bar:
            by_bar[n[2] // bar_ticks].append(n)
    count = -(-length_ticks // bar_ticks)
    slots: list[Slot] = []
    for k in range(count):
        source = template_bar(bars, k, count)
        for pitch, velocity, onset, duration in sorted(by_bar[source], key=lambda n: n[2]):
            place = onset - source * bar_ticks
            at = k * bar_ticks + place
            if length_ticks - at < too_short:
                break
            slots.append(Slot(at, max(1, min(duration, length_ticks - at)), velocity, place, pitch))
    if slots and slots[0].onset_ticks > 0:  # the answer begins on its beat, as planned: its first note moves there
        first = slots[0]
        slots[0] = Slot(0, first.duration_ticks + first.onset_ticks, first.velocity, first.bar_place_ticks,
                        first.template_pitch)
    return slots


def walk_plan(line: Line, length_ticks: int, bar_ticks: int, ppq: int, rng: random.Random,
              too_short: int) -> list[Slot]:
    """Onsets on the phrase's grid: from each place in the beat a step (and a duration, a velocity) the player
    took from there, rests up to a bar, the last bar always sounding; the player's feel (``groove_of``) kept."""
    grid_ticks = grid_ticks_of([n[2] for n in line], ppq)
    per_quarter = max(1, ppq // grid_ticks)
    groove = groove_of([n[2] for n in line], grid_ticks, per_quarter)
    moves: dict[int, list[tuple[int, int, int]]] = {}  # grid place in the quarter -> (steps, duration, velocity)
    for a, b in zip(line, line[1:], strict=False):
        start = round(a[2] / grid_ticks)
        moves.setdefault(start % per_quarter, []).append((max(1, round(b[2] / grid_ticks) - start), a[3], a[1]))
    every = [m for ms in moves.values() for m in ms]
    if not every and line:  # one note: its own length as the step
        every = [(max(1, round(line[-1][3] / grid_ticks)), line[-1][3], line[-1][1])]
    if not every:
        return []
    last_bar = (length_ticks - 1) // bar_ticks * bar_ticks  # the answer's last bar line: it must sound
    longest = bar_ticks // grid_ticks * grid_ticks  # a rest lasts a bar at most
    slots: list[Slot] = []
    position = 0  # on the grid; the groove is added per onset
    while True:
        place = (position // grid_ticks) % per_quarter
        onset = max(0, position + groove.get(place, 0))
        if position >= last_bar:
            onset = max(onset, last_bar)  # no rushing out of the last bar
        if length_ticks - onset < too_short:
            break
        steps, duration, velocity = rng.choice(moves.get(place) or every)
        slots.append(Slot(onset, max(1, min(duration, length_ticks - onset)), velocity, onset % bar_ticks, None))
        step_ticks = min(steps * grid_ticks, longest)
        if position < last_bar and position + step_ticks >= length_ticks - too_short:
            step_ticks = max(grid_ticks, -(-(last_bar - position) // grid_ticks) * grid_ticks)  # land in it
        position += step_ticks
    return slots


def grid_ticks_of(onsets: Sequence[int], ppq: int) -> int:
    """16ths or eighth-note triplets, whichever the onsets sit closer to."""
    if not onsets:
        return ppq // 4

    def misfit(grid: int) -> float:
        return sum(min(o % grid, grid - o % grid) / grid for o in onsets)

    return min((ppq // 4, ppq // 3), key=misfit)


def groove_of(onsets: Sequence[int], grid_ticks: int, per_quarter: int, keep: float = 0.6) -> dict[int, int]:
    """The player's feel: mean offset from the grid per grid place in the quarter (swing, laid back), times
    ``keep``: walked answers sit on the grid plus that much of it."""
    offsets: dict[int, list[int]] = {}
    for onset in onsets:
        nearest = round(onset / grid_ticks)
        offsets.setdefault(nearest % per_quarter, []).append(onset - nearest * grid_ticks)
    return {place: round(keep * sum(v) / len(v)) for place, v in offsets.items()}
