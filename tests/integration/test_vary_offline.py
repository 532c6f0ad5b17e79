"""`companion generate vary|interpolate` end to end with the shipped phrase VAE: valid files, clear errors."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest

from companion.cli import main

TPB = 480
BAR = 4 * TPB


def _write(path: Path, notes: list[tuple[int, int, int]], numerator: int = 4, bpm: float = 96.0) -> Path:
    """A type-1 file: tempo/meter track, then one melody track; notes are (pitch, start, duration) in ticks."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TPB)
    midi.tracks.append(mido.MidiTrack([
        mido.MetaMessage("time_signature", numerator=numerator, denominator=4, time=0),
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
    ]))
    events = sorted([(s, 1, p) for p, s, _ in notes] + [(s + d, 0, p) for p, s, d in notes])
    track, now = mido.MidiTrack([mido.MetaMessage("track_name", name="melody", time=0)]), 0
    for at, on, pitch in events:
        track.append(mido.Message("note_on" if on else "note_off", note=pitch, velocity=90 if on else 0, time=at - now))
        now = at
    midi.tracks.append(track)
    midi.save(path)
    return path


def _melody(bars: int, base: int = 62) -> list[tuple[int, int, int]]:
    scale = (0, 2, 4, 5, 7, 9, 7, 5)
    return [(base + scale[i % 8], i * TPB, TPB - 30) for i in range(4 * bars)]


def _companion_notes(path: Path) -> tuple[mido.MidiFile, list[tuple[int, int]]]:
    """The file, and (start tick, pitch) of every note on its `companion` track."""
    midi = mido.MidiFile(path)
    [track] = [t for t in midi.tracks if t.name == "companion"]
    now, notes = 0, []
    for msg in track:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            notes.append((now, msg.note))
    return midi, notes


def test_vary_writes_count_variations_after_the_input(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.mid", _melody(4))
    out = tmp_path / "out.mid"
    assert main(["generate", "vary", str(source), "-o", str(out), "--count", "2", "--distance", "0.3",
                 "--seed", "5"]) == 0
    midi, notes = _companion_notes(out)
    assert midi.type == 1 and len(midi.tracks) == 3  # tempo, the melody unchanged, companion
    assert [m.type for m in midi.tracks[0] if m.is_meta][:2] == ["time_signature", "set_tempo"]
    assert notes and all(4 * BAR <= start < 12 * BAR for start, _ in notes)  # two 4-bar variations after 4 bars
    assert any(start >= 8 * BAR for start, _ in notes)  # the second variation is there too
    # the same seed gives the same variations
    again = tmp_path / "again.mid"
    assert main(["generate", "vary", str(source), "-o", str(again), "--count", "2", "--seed", "5",
                 "--distance", "0.3"]) == 0
    assert _companion_notes(again)[1] == notes


def test_vary_at_distance_zero_plays_the_phrase_back(tmp_path: Path) -> None:
    melody = _melody(2)
    source = _write(tmp_path / "in.mid", melody)
    out = tmp_path / "out.mid"
    assert main(["generate", "vary", str(source), "-o", str(out), "--distance", "0"]) == 0
    _, notes = _companion_notes(out)
    assert notes == [(start + 2 * BAR, pitch) for pitch, start, _ in melody]


def _notes_of(track: mido.MidiTrack) -> list[tuple[int, int]]:
    now, notes = 0, []
    for msg in track:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            notes.append((now, msg.note))
    return notes


def test_interpolate_plays_a_then_the_steps_between_then_b(tmp_path: Path) -> None:
    melody_b = [(69, 0, 2 * TPB), (67, 2 * TPB, 2 * TPB), (66, 4 * TPB, 4 * TPB)]
    a = _write(tmp_path / "a.mid", _melody(2, base=62))
    b = _write(tmp_path / "b.mid", melody_b, bpm=140.0)
    out = tmp_path / "out.mid"
    assert main(["generate", "interpolate", str(a), str(b), "-o", str(out), "--steps", "4"]) == 0
    midi, between = _companion_notes(out)
    names = [t.name for t in midi.tracks]
    assert names == ["", "melody", "melody", "companion"]  # A's tempo and melody, B's melody, the steps
    assert _notes_of(midi.tracks[1]) == _notes_of(mido.MidiFile(a).tracks[1])  # A as it is, first
    assert _notes_of(midi.tracks[2]) == [(6 * BAR + start, p) for p, start, _ in melody_b]  # B as it is, last
    # --steps 4 counts A and B: two 2-bar steps between them
    assert between and all(2 * BAR <= start < 6 * BAR for start, _ in between)
    assert any(start < 4 * BAR for start, _ in between) and any(start >= 4 * BAR for start, _ in between)
    tempos = [m.tempo for t in midi.tracks for m in t if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(96.0)]  # the first input's tempo rules the file


@pytest.mark.parametrize("mode, args, message", [
    ("vary", ["--distance", "3"], "--distance must be between 0 and 1"),
    ("vary", ["--count", "0"], "--count must be between 1 and 64"),
    ("interpolate", ["--steps", "2"], "--steps must be between 3 and 64 (A and B included"),
])
def test_bad_options_exit_2_as_a_usage_error_naming_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             mode: str, args: list[str], message: str) -> None:
    source = _write(tmp_path / "in.mid", _melody(1))
    inputs = [str(source)] * (2 if mode == "interpolate" else 1)
    assert main(["generate", mode, *inputs, "-o", str(tmp_path / "o.mid"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"companion: Usage error: {message}") and "Input file error" not in err


def test_bad_or_empty_files_exit_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd not really")
    assert main(["generate", "vary", str(broken), "-o", str(tmp_path / "o.mid")]) == 2
    assert "broken.mid" in capsys.readouterr().err
    empty = _write(tmp_path / "empty.mid", [])
    assert main(["generate", "vary", str(empty), "-o", str(tmp_path / "o.mid")]) == 2
    assert "empty.mid" in capsys.readouterr().err
    a = _write(tmp_path / "a.mid", _melody(1))
    waltz = _write(tmp_path / "waltz.mid", _melody(1), numerator=3)
    assert main(["generate", "interpolate", str(a), str(waltz), "-o", str(tmp_path / "o.mid")]) == 2
    assert "waltz.mid" in capsys.readouterr().err
    assert main(["generate", "interpolate", str(a), "-o", str(tmp_path / "o.mid")]) == 2


def test_interpolate_leaves_both_inputs_as_read_and_hands_b_to_the_writer(tmp_path: Path) -> None:
    import argparse

    from companion.files.midifile import read_midi
    from companion.offline import modes

    a = _write(tmp_path / "a.mid", _melody(2, base=62))
    b = _write(tmp_path / "b.mid", _melody(2, base=69))
    source = read_midi(a)
    tracks = [list(t) for t in source.source.tracks]
    args = argparse.Namespace(mode="interpolate", inputs=[str(a), str(b)], steps=4, seed=0)
    notes, then, _ = modes.run(args, source, {})
    assert notes and [list(t) for t in source.source.tracks] == tracks, "A's tracks in memory are not changed"
    [(other, start)] = then
    assert other.path == b and start == 6 * source.bar_ticks  # B after A (2 bars) and two 2-bar steps
    assert modes.run(argparse.Namespace(mode="vary", inputs=[str(a)], distance=0.0, count=1, seed=0),
                             source, {})[1] == []
