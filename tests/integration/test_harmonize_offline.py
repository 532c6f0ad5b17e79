"""Offline harmonize with the shipped models (chorale, and the chord model for the lead-sheet styles): a valid
type-1 file, the melody unchanged, harmony under it, chord symbols as markers."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest

from companion.core.events import PPQ, Note
from companion.errors import InputFileError
from companion.files.midifile import COMPANION_TRACK, read_midi, write_take, write_with_answer
from companion.offline.harmonize import harmonize_file, melody_of
from models.chorale.harmonizer import SHIPPED_CHECKPOINT

pytestmark = pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="the shipped harmonizer is not built yet")

# A folk-like line in G with 8ths, a long note, a leap and notes above the chorale range (folded, never silent).
TUNE = [(67, 0, 480), (72, 480, 480), (72, 960, 240), (74, 1200, 240), (76, 1440, 960), (74, 2400, 480),
        (72, 2880, 480), (71, 3360, 480), (72, 3840, 960), (88, 4800, 480), (86, 5280, 480), (84, 5760, 960)]


def melody_file(tmp_path: Path, extra: list[Note] = ()) -> Path:  # type: ignore[assignment]
    notes = [Note(p, 90, s, d, 0) for p, s, d in TUNE] + list(extra)
    return write_take(tmp_path / "melody.mid", [("melody", notes)], 96.0, beats_per_bar=3)


def sounding_at(notes: list[Note], ticks: int) -> list[Note]:
    return [n for n in notes if n.start_ticks <= ticks < n.end_ticks]


@pytest.mark.parametrize("style", ["chorale", "block", "bass", "pad", "comping", "arpeggio"])
def test_harmony_file_keeps_the_melody_and_sounds_under_its_notes(tmp_path: Path, style: str) -> None:
    source = read_midi(melody_file(tmp_path))
    harmony = harmonize_file(source, seed=2, settings={"harmony_style": style})
    out = write_with_answer(source, harmony, tmp_path / "out.mid")
    written = mido.MidiFile(out)
    original = mido.MidiFile(source.path)
    assert written.type == 1 and len(written.tracks) == len(original.tracks) + 1
    for before, after in zip(original.tracks, written.tracks, strict=False):
        assert [m.dict() for m in before] == [m.dict() for m in after]  # the input's tracks, unchanged
    assert written.tracks[-1].name == COMPANION_TRACK
    melody = list(source.notes)
    assert harmony, "no harmony at all"
    for note in harmony:
        under = sounding_at(melody, note.start_ticks)
        if style in ("chorale", "block"):  # these end with their melody note
            assert under, f"{note} starts where no melody note sounds"
            assert note.end_ticks <= max(m.end_ticks for m in under), f"{note} outlasts its melody note"
        elif style in ("bass", "pad"):  # a lead-sheet chord rings until it changes: it starts with the melody
            assert under, f"{note} starts where no melody note sounds"
        assert note.end_ticks <= max(m.end_ticks for m in melody), f"{note} outlasts the tune"
        assert note.channel == 1  # the first channel the input does not use
    if style in ("chorale", "block"):
        assert all(n.pitch < sounding_at(melody, n.start_ticks)[0].pitch for n in harmony), "a voice above the tune"
    # every melody note on a beat has harmony starting with it (the chorale's folded high notes included), or
    # sounding under it (a lead-sheet chord that holds)
    for p, s, _ in TUNE:
        if s % PPQ == 0:
            assert any(n.start_ticks == s or (style not in ("chorale", "block") and n.start_ticks < s < n.end_ticks)
                       for n in harmony), f"melody note {p} at {s} has no harmony"
    reread = read_midi(out)
    assert [n for n in reread.notes if n.channel == 0] == melody


def test_lead_sheet_styles_write_their_chord_symbols_as_markers(tmp_path: Path) -> None:
    from companion.cli import main

    out = tmp_path / "out.mid"
    assert main(["generate", "harmonize", str(melody_file(tmp_path)), "-o", str(out), "--style", "comping"]) == 0
    markers = [(m.text, t) for t, m in _timed(mido.MidiFile(out).tracks[-1]) if m.type == "marker"]
    assert markers and markers[0][1] == 0, "the first chord symbol at the first melody note"
    bar = 3 * mido.MidiFile(out).ticks_per_beat
    assert all(t % (bar // 3) == 0 for _, t in markers), "chord symbols on beats (change_every: beat)"
    from models.chords import vocab

    names = {vocab.chord_name(i) for i in range(vocab.N_CHORDS)}
    assert {text for text, _ in markers} <= names
    assert main(["generate", "harmonize", str(melody_file(tmp_path)), "-o", str(out), "--style", "swing"]) == 2


def _timed(track: mido.MidiTrack) -> list[tuple[int, mido.Message]]:
    now, out = 0, []
    for message in track:
        now += message.time
        out.append((now, message))
    return out


def test_same_seed_same_file_and_settings_are_checked(tmp_path: Path) -> None:
    source = read_midi(melody_file(tmp_path))
    first = harmonize_file(source, seed=5, settings={"temperature": 1.2})
    assert harmonize_file(source, seed=5, settings={"temperature": 1.2}) == first
    with pytest.raises(InputFileError, match="change_every"):
        harmonize_file(source, seed=5, settings={"change_every": "fortnight"})


def test_drums_only_is_a_clear_input_error(tmp_path: Path) -> None:
    path = write_take(tmp_path / "drums.mid", [("drums", [Note(36, 100, i * PPQ, 100, 9) for i in range(8)])], 120.0)
    with pytest.raises(InputFileError, match="no melody"):
        harmonize_file(read_midi(path), seed=0, settings={})


def test_the_melody_is_the_top_voice_of_chords_and_inner_voices() -> None:
    notes = [Note(60, 80, 0, 960), Note(64, 80, 0, 960), Note(72, 80, 5, 960),  # a chord: the top is the melody
             Note(67, 80, 480, 240),  # an inner voice under the held 72
             Note(74, 80, 960, 480), Note(50, 80, 960, 480, 9)]  # drums are never melody
    assert [(n.pitch, n.start_ticks, n.duration_ticks) for n in melody_of(notes)] == [(72, 5, 955), (74, 960, 480)]


def _phrases_file(tmp_path: Path) -> Path:
    """C major in 4/4: phrases stop on D (beat 4), B (beat 12) and F (beat 20), each with half a bar of rest after
    it, and the tune ends on C. (The D and the F keep their V and ii either way: the model hears them strongly.)"""
    bars = [[60, 64, 67, 64], [62, 62, None, None], [64, 65, 67, 69], [71, 71, None, None],
            [72, 71, 69, 67], [65, 65, None, None], [64, 62, 64, 62], [60, 60, 60, 60]]
    notes = [Note(p, 90, (4 * b + i) * PPQ, PPQ, 0) for b, bar in enumerate(bars) for i, p in enumerate(bar)
             if p is not None]
    return write_take(tmp_path / "phrases.mid", [("melody", notes)], 100.0)


def test_home_cadences_close_phrases_on_the_tonic_where_melody_cadences_leave_half_cadences(tmp_path: Path) -> None:
    from companion.offline.harmonize import harmonize_with_symbols
    from models.chords import vocab

    source = read_midi(_phrases_file(tmp_path))

    def chord_at(symbols: list[tuple[int, str]], beat: int) -> str:
        return [name for ticks, name in symbols if ticks <= beat * PPQ][-1]

    tonic_family = {vocab.chord_name(vocab.chord_index(0, q)) for q in ("", "maj7", "sus4")}
    _, home = harmonize_with_symbols(source, seed=0, settings={"harmony_style": "pad"})  # "home" by default
    for beat in (12, 13, 28, 31):  # under all of the B that ends a phrase (Cmaj7 holds it), and the last C
        assert chord_at(home, beat) in tonic_family, (beat, home)
    _, melody = harmonize_with_symbols(source, seed=0, settings={"harmony_style": "pad", "cadences": "melody"})
    assert chord_at(melody, 12) not in tonic_family, f"the phrase ending on B: a half cadence expected, {melody}"
    assert chord_at(melody, 31) in tonic_family  # the song still ends at home
    with pytest.raises(InputFileError, match="cadences must be one of home, melody"):
        harmonize_file(source, seed=0, settings={"cadences": "always"})
