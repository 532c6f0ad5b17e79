"""The drummer's pure decisions: the player's bar, density and loudness, fills and breaks, hits -> notes."""

from __future__ import annotations

import pytest

from companion.core.drums import (
    DRUM_CHANNEL,
    HIT_TICKS,
    PIECE_NOTES,
    DrumFeel,
    PlayerBar,
    bar_notes,
    bar_plan,
    drum_density,
    drum_velocity,
    is_phrase_end,
    player_bar,
)
from companion.core.events import Note

BAR = 1920


def test_player_bar_reads_onsets_on_the_nearest_16th_and_ignores_other_bars() -> None:
    notes = [Note(60, 127, BAR + 0, 100), Note(62, 64, BAR + 250, 100), Note(64, 30, BAR + 245, 50),
             Note(65, 90, 0, 100), Note(67, 90, 2 * BAR, 100)]
    bar = player_bar(notes, BAR, BAR)
    assert bar.notes == 3 and bar.played
    assert bar.taps[0] == 1.0 and bar.taps[2] == pytest.approx(64 / 127)  # 245 and 250 -> step 2, loudest kept
    assert sum(1 for t in bar.taps if t) == 2
    assert bar.velocity == pytest.approx((127 + 64 + 30) / 3 / 127)
    assert not player_bar([], 0, BAR).played


def test_density_and_velocity_follow_the_player() -> None:
    feel = DrumFeel(density=0.5)
    busy = PlayerBar((0.5,) * 16, 16, 0.9)
    sparse = PlayerBar((0.5,) + (0.0,) * 15, 1, 0.3)
    assert drum_density(feel, busy) > drum_density(feel, None) == 0.5 > drum_density(feel, sparse)
    assert drum_velocity(busy) == 0.9 and drum_velocity(None) == 0.6


def test_fills_come_on_the_last_bar_of_a_phrase_at_the_fill_rate() -> None:
    assert [is_phrase_end(i, 4) for i in range(8)] == [False, False, False, True] * 2
    always, never, half = DrumFeel(fill_rate=1.0), DrumFeel(fill_rate=0.0), DrumFeel(fill_rate=0.5)
    assert bar_plan(3, True, None, None, always, 0) == (None, True)
    assert bar_plan(2, False, None, None, always, 0) == (None, False)
    assert not any(bar_plan(i, True, None, None, never, 0)[1] for i in range(50))
    share = sum(bar_plan(i, True, None, None, half, 7)[1] for i in range(400)) / 400
    assert 0.35 < share < 0.65


def test_a_break_when_the_player_stops() -> None:
    feel = DrumFeel(fill_rate=0.0)
    played = PlayerBar((0.8,) + (0.0,) * 15, 1, 0.6)
    assert bar_plan(0, False, played, None, feel, 0) == (played.taps, False)
    assert bar_plan(1, False, None, played, feel, 0) == (None, True)  # the player stopped: a break
    assert bar_plan(2, False, None, None, feel, 0) == (None, False)  # still silent: the groove goes on alone


def test_a_sections_last_bar_is_always_a_fill() -> None:
    never = DrumFeel(fill_rate=0.0)
    assert all(bar_plan(i, True, None, None, never, 0, section_end=True)[1] for i in range(20))


def test_hits_become_short_notes_on_the_drum_channel_with_swing_and_humanize() -> None:
    hits = [(0, 0, 1.0, -0.3), (2, 1, 0.5, 0.2), (1, 15, 0.1, 0.4)]
    straight = bar_notes(hits, BAR, BAR, DrumFeel(humanize=0.0))
    assert [(n.pitch, n.start_ticks) for n in straight] == [(PIECE_NOTES[0], BAR), (PIECE_NOTES[2], BAR + 120),
                                                            (PIECE_NOTES[1], BAR + 15 * 120)]
    assert all(n.channel == DRUM_CHANNEL and n.duration_ticks == HIT_TICKS for n in straight)
    assert [n.velocity for n in straight] == [127, 64, 13]
    human = bar_notes(hits, BAR, BAR, DrumFeel(humanize=1.0))
    assert human[0].start_ticks == BAR  # never before its bar line
    assert human[1].start_ticks == BAR + 120 + 24
    swung = bar_notes(hits, BAR, BAR, DrumFeel(humanize=0.0, swing=1.0))
    assert swung[1].start_ticks == BAR + 160  # the off 16th moves to the triplet
    three_four = bar_notes(hits, 0, 1440, DrumFeel(humanize=0.0, channel=3))
    assert [n.pitch for n in three_four] == [PIECE_NOTES[0], PIECE_NOTES[2]] and three_four[0].channel == 3


@pytest.mark.parametrize("changes, field", [({"style": "polka"}, "style"), ({"density": 1.5}, "density"),
                                            ({"channel": 16}, "channel"), ({"phrase_bars": 0}, "phrase_bars")])
def test_a_bad_feel_names_its_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        DrumFeel(**changes)
