"""Keys, scales, snapping, key estimation and chord naming."""

from __future__ import annotations

import pytest

from companion.core.theory import (
    Chord,
    Key,
    chord_from_pitches,
    diatonic_chord,
    diatonic_chords,
    estimate_key,
    key_correlations,
    pitch_name,
    snap_to_pitch_classes,
)


def test_key_scale_and_contains() -> None:
    d_minor = Key(2, "minor")
    assert d_minor.scale_pitch_classes == frozenset({2, 4, 5, 7, 9, 10, 0})
    assert d_minor.contains(62) and d_minor.contains(70) and not d_minor.contains(71)
    assert d_minor.name == "D minor"
    assert Key(10, "major").name == "Bb major"
    assert Key(6, "minor").name == "F# minor"
    assert Key(7, "mixolydian").name == "G mixolydian"
    assert Key(9, "aeolian").mode == "minor"


def test_key_parse_round_trip() -> None:
    for text in ("D minor", "Bb major", "F# dorian", "Eb harmonic minor", "c"):
        key = Key.parse(text)
        assert Key.parse(key.name) == key
    assert Key.parse("c") == Key(0, "major")
    with pytest.raises(ValueError, match="unknown key tonic"):
        Key.parse("H minor")
    with pytest.raises(ValueError, match="unknown scale"):
        Key(0, "bebop-ish")


def test_snap() -> None:
    c_major = Key(0, "major")
    assert c_major.snap(60) == 60
    assert c_major.snap(61) == 60  # tie goes down
    assert c_major.snap(61, prefer_up=True) == 62
    assert c_major.snap(66) == 65
    pent = Key(0, "major_pentatonic")  # C D E G A
    assert pent.snap(65) == 64  # F: E is one below, G two above
    assert pent.snap(71) == 72  # B: C one above
    assert snap_to_pitch_classes(127, {0}) == 120  # stays within MIDI range
    assert snap_to_pitch_classes(61, set()) == 61


def test_pitch_name() -> None:
    assert pitch_name(60) == "C4" and pitch_name(69) == "A4" and pitch_name(61) == "C#4"


def test_estimate_key_major_and_minor() -> None:
    # A C major scale with long tonic and dominant.
    c_major = [(60, 4.0), (62, 1.0), (64, 2.0), (65, 1.0), (67, 3.0), (69, 1.0), (71, 1.0), (72, 4.0)]
    assert estimate_key(c_major) == Key(0, "major")
    # A minor: tonic triad weighted, with G# leading tone.
    a_minor = [(57, 4.0), (60, 3.0), (64, 3.0), (62, 1.0), (65, 1.0), (68, 1.0), (69, 4.0), (71, 1.0)]
    assert estimate_key(a_minor) == Key(9, "minor")
    # Transposition moves the key.
    d_major = [(p + 2, w) for p, w in c_major]
    assert estimate_key(d_major) == Key(2, "major")


def test_estimate_key_edge_cases() -> None:
    assert estimate_key([]) is None
    assert estimate_key([(60, 0.0)]) is None
    ranked = key_correlations([(60, 1.0), (64, 1.0), (67, 1.0)])
    assert len(ranked) == 24
    assert ranked[0][1] >= ranked[-1][1]


def test_diatonic_chords() -> None:
    names = [chord.name for chord in diatonic_chords(Key(0, "major"))]
    assert names == ["C", "Dm", "Em", "F", "G", "Am", "Bdim"]
    assert diatonic_chord(Key(0, "major"), 5, seventh=True) == (7, 11, 2, 5)
    sevenths = [chord.name for chord in diatonic_chords(Key(9, "harmonic_minor"), seventh=True)]
    assert sevenths[0] == "AmMaj7" and sevenths[4] == "E7"
    with pytest.raises(ValueError, match="7-note"):
        diatonic_chord(Key(0, "major_pentatonic"), 1)


def test_chord_from_pitches() -> None:
    assert chord_from_pitches([60, 64, 67]) == Chord(0, "")
    assert chord_from_pitches([64, 67, 72]) == Chord(0, "")  # first inversion
    assert chord_from_pitches([57, 60, 64, 67]) == Chord(9, "m7")  # lowest note as root: Am7, not C6
    assert chord_from_pitches([60, 64, 67, 69], root_hint=0) == Chord(0, "6")
    assert chord_from_pitches([67, 71, 74, 77]).name == "G7"  # type: ignore[union-attr]
    assert chord_from_pitches([60, 61, 62]) is None
    assert chord_from_pitches([60, 72]) is None
    assert Chord(0, "maj7").voicing(50) == (60, 64, 67, 71)
