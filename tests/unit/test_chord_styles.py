"""Voicing a chord symbol per style: registers, the melody on top, voice leading, the clock styles' rhythm."""

from __future__ import annotations

from companion.core.engine import EngineSettings
from companion.harmony.chord_styles import BASS_HIGH, BASS_LOW, COMP_LOW, chord_notes, slot_steps, strike
from models.chords import vocab

C, G7, AM = vocab.chord_index(0, ""), vocab.chord_index(7, "7"), vocab.chord_index(9, "m")


def _settings(**changes: object) -> EngineSettings:
    return EngineSettings(mode="harmonize", **changes)


def test_pad_has_the_root_at_the_bottom_of_its_register() -> None:
    notes = chord_notes("pad", G7, 74, [], _settings(pad_low_note=48))
    pitches = sorted(p for _, p in notes)
    assert pitches[0] == 55 and {p % 12 for p in pitches} == {7, 11, 2, 5}
    assert all(48 <= p <= 48 + 12 + 16 for p in pitches)


def test_voices_move_little_from_chord_to_chord() -> None:
    settings = _settings()
    first = chord_notes("comping", C, 76, [], settings)
    second = chord_notes("comping", AM, 76, first, settings)
    upper = lambda notes: sorted(p for _, p in notes if p >= COMP_LOW)  # noqa: E731
    moved = sum(abs(a - b) for a, b in zip(upper(first), upper(second), strict=True))
    assert moved <= 4  # C -> Am: one voice a tone up, the others stay
    assert all(p < 76 for p in upper(second))  # under the melody


def test_bass_and_block_and_channels() -> None:
    settings = _settings(harmony_channels=(1, 2, 3))
    [(channel, bass)] = chord_notes("bass", AM, 72, [], settings)
    assert channel == 3 and BASS_LOW <= bass <= BASS_HIGH and bass % 12 == 9
    block = chord_notes("block", C, 67, [], settings)
    assert sorted(p for _, p in block) == [60, 64] and {c for c, _ in block} == {1}  # the melody has the G


def test_clock_rhythms_follow_the_meter() -> None:
    four = _settings()
    voicing = chord_notes("comping", C, 76, [], four)
    hits = [s for s in range(16) if strike("comping", s, voicing, four, 0) is not None]
    assert hits == [0, 6, 8, 14]
    jig = _settings(beats_per_bar=6, beat_unit=8)
    assert slot_steps(jig) == 6
    arp = chord_notes("arpeggio", C, 76, [], jig)
    assert [s for s in range(12) if strike("arpeggio", s, arp, jig, 0)] == [0, 2, 4, 6, 8, 10]
    climb = [strike("arpeggio", s, arp, four, 0)[0][1] for s in range(0, 8, 2)]
    assert climb == sorted(climb)  # up the chord first
