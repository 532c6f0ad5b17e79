"""append_input: a second input's tracks added after the first's, in the first's resolution, tempo and meter."""

from __future__ import annotations

from pathlib import Path

import mido

from companion.core.events import PPQ
from companion.files.midifile import append_input, read_midi, write_with_answer


def _file(path: Path, ppq: int, file_type: int, name: str | None) -> Path:
    midi = mido.MidiFile(type=file_type, ticks_per_beat=ppq)
    meta = [mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(150), time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0)]
    notes = [mido.Message("program_change", program=40, channel=2, time=0)]
    for pitch in (70, 72):
        notes += [mido.Message("note_on", note=pitch, velocity=90, channel=2, time=0),
                  mido.Message("note_off", note=pitch, velocity=0, channel=2, time=ppq)]
    named = [mido.MetaMessage("track_name", name=name, time=0)] if name else []
    if file_type == 0:
        midi.tracks.append(mido.MidiTrack(named + meta + notes))
    else:
        midi.tracks += [mido.MidiTrack(meta), mido.MidiTrack(named + notes)]
    midi.save(path)
    return path


def _events(track: mido.MidiTrack) -> list[tuple[int, str]]:
    now, out = 0, []
    for msg in track:
        now += msg.time
        out.append((now, msg.type))
    return out


def test_a_type_0_file_at_another_resolution_lands_after_the_offset(tmp_path: Path) -> None:
    first = read_midi(_file(tmp_path / "a.mid", PPQ, 1, "a melody"))
    second = read_midi(_file(tmp_path / "b.mid", 96, 0, None))
    before = len(first.source.tracks)
    append_input(first, second, 8 * PPQ)
    [added] = first.source.tracks[before:]
    assert added.name == "b"  # a nameless track is named after its file
    offset = 8 * first.source.ticks_per_beat
    assert _events(added) == [(0, "track_name"), (offset, "program_change"), (offset, "note_on"),
                              (offset + PPQ, "note_off"), (offset + PPQ, "note_on"), (offset + 2 * PPQ, "note_off"),
                              (offset + 2 * PPQ, "end_of_track")]
    out = tmp_path / "out.mid"
    write_with_answer(first, [], out)
    written = mido.MidiFile(out)
    assert [m.tempo for t in written.tracks for m in t if m.type == "set_tempo"] == [mido.bpm2tempo(150)]
    assert [t.name for t in written.tracks] == ["", "a melody", "b", "companion"]
    assert mido.MidiFile(tmp_path / "b.mid").ticks_per_beat == 96  # the second file itself is untouched


def test_a_tempo_only_track_is_left_out_and_names_are_kept(tmp_path: Path) -> None:
    first = read_midi(_file(tmp_path / "a.mid", PPQ, 1, "a melody"))
    second = read_midi(_file(tmp_path / "b.mid", PPQ, 1, "flute"))
    append_input(first, second, 0)
    assert [t.name for t in first.source.tracks] == ["", "a melody", "flute"]
