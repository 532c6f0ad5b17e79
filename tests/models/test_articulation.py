"""A played phrase read as notation: the player's touch (how long notes sound in their room) and a steady offset
from the clock's grid, measured and taken out before the model reads the phrase; the answer played back with it."""

from __future__ import annotations

import random

import pytest

from models.articulation import gate, grid_offset, notated, played
from models.continuation.prompt_style import single_line
from models.tokenizer import GridNote

PPQ = 480
EIGHTHS = [(60 + i % 5, 90, i * PPQ // 2, PPQ // 2) for i in range(8)]


def test_a_score_is_read_as_written() -> None:
    assert gate(EIGHTHS, PPQ) == 1.0
    assert notated(EIGHTHS, 1.0) == EIGHTHS
    assert grid_offset(EIGHTHS, PPQ) == 0
    rests = [(60, 90, 0, PPQ), (62, 90, 2 * PPQ, PPQ), (64, 90, 4 * PPQ, PPQ)]  # quarter, quarter rest: too far
    assert gate(rests, PPQ) == 1.0
    s = PPQ // 4  # a written 16th and a dotted-8th rest among held notes: a rest, not the player's touch
    written = [(67, 80, 0, 2 * s), (69, 80, 2 * s, s), (71, 80, 3 * s, s), (72, 80, 7 * s, s), (74, 80, 8 * s, s),
               (72, 80, 9 * s, 4 * s)]
    assert gate(written, PPQ) == 1.0


def test_detached_notes_are_read_legato_and_the_answer_gets_the_touch_back() -> None:
    detached = [(p, v, t, 200) for p, v, t, _ in EIGHTHS]  # 200 of 240 ticks sounding
    share = gate(detached, PPQ)
    assert share == pytest.approx(200 / 240)
    written = notated(detached, share)
    assert [n[3] for n in written[:-1]] == [240] * 7  # up to the next onset, never past it
    assert written[-1][3] == 240  # the last note: lengthened by the same touch
    assert played(480, share) == 400


def test_rests_are_rests_not_short_notes() -> None:
    dabs = [(p, v, t, 40) for p, v, t, _ in EIGHTHS]  # 1/6 of the room: a rhythm of rests
    assert gate(dabs, PPQ) == 1.0


@pytest.mark.parametrize("offset", [-50, -17, 23, 55])
def test_a_steady_offset_from_the_grid_is_taken_out(offset: int) -> None:
    rng = random.Random(offset)
    shifted = [(p, v, t + offset + rng.randint(-8, 8), d) for p, v, t, d in EIGHTHS]
    back = grid_offset(shifted, PPQ)
    assert abs(offset + back) <= 10
    triplets = [(60, 90, i * PPQ // 3 + offset + 120, 150) for i in range(9)]
    assert (triplets[0][2] + grid_offset(triplets, PPQ)) % (PPQ // 3) in (0, PPQ // 3 - 1, 1)


def test_loose_timing_is_left_as_played() -> None:
    rng = random.Random(4)
    loose = [(60, 90, i * PPQ // 2 + rng.randint(-60, 60), 200) for i in range(12)]
    assert grid_offset(loose, PPQ) == 0


def test_a_line_with_a_stray_double_note_is_still_a_line() -> None:
    line = [GridNote(60 + i, 90, i * 6, 6) for i in range(12)]
    assert single_line(line)
    assert single_line(line + [GridNote(72, 90, 0, 6)])  # one grace note on a main note's place
    chords = line + [GridNote(64 + i, 90, i * 6, 6) for i in range(0, 12, 2)]
    assert not single_line(chords)
    assert not single_line([])
