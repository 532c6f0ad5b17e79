"""Standard MIDI files: read notes, tempo and meter from an input; write type-1 files with a `companion` track."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mido
from mido.midifiles.meta import KeySignatureError

from companion.core.events import PPQ, Note
from companion.core.notes import without_overlaps
from companion.errors import InputFileError, OutputFileError, UsageError
from companion.files.writing import regular_target, write_atomically

COMPANION_TRACK = "companion"
MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")
DEFAULT_TEMPO_US = 500_000  # 120 BPM


@dataclass(frozen=True)
class MidiInput:
    """What a file holds, in our PPQ: its notes (sorted), tempo, meter, and the file itself for copying tracks."""

    path: Path
    source: mido.MidiFile
    notes: tuple[Note, ...]
    tempo_us: int
    beats_per_bar: int
    beat_unit: int
    end_ticks: int  # end of the last note, in our PPQ

    @property
    def bpm(self) -> float:
        return mido.tempo2bpm(self.tempo_us)

    @property
    def bar_ticks(self) -> int:
        return self.beats_per_bar * PPQ * 4 // self.beat_unit


def _scale(ticks: int, file_ppq: int) -> int:
    return round(ticks * PPQ / file_ppq)


EXPORT_AGAIN = "export it again as a Standard MIDI File (.mid) from your DAW or notation program"


def _not_a_file(path: Path) -> InputFileError:
    if not path.is_dir():
        return InputFileError(f"{path}: no such file; check the path")
    inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".mid", ".midi"))
    hint = f" (it holds {len(inside)}: {', '.join(inside[:3])}{', ...' if len(inside) > 3 else ''})" if inside else ""
    return InputFileError(f"{path}: is a folder, not a MIDI file; give the path of one .mid file{hint}")


def _unreadable(path: Path, err: Exception) -> InputFileError:
    """What is wrong with a file mido could not read, in words, and what to do."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as os_err:
        return InputFileError(f"{path}: the file cannot be read ({os_err.strerror}); check its permissions")
    if not head:
        problem = "the file is empty (0 bytes)"
    elif head != b"MThd":
        problem = ("not a Standard MIDI File (it does not start with the MIDI header 'MThd': is it audio, text or "
                   "another format?)")
    elif isinstance(err, EOFError):
        problem = f"the file ends early ({path.stat().st_size} bytes, cut off in the middle of the MIDI data)"
    else:
        problem = f"a damaged MIDI file ({str(err) or type(err).__name__})"
    return InputFileError(f"{path}: {problem}; {EXPORT_AGAIN}")


# What we can play (the engine's meters, EngineSettings) and how long a file we read: about 14 hours at 120 BPM.
METER_NUMERATORS = range(1, 33)
METER_UNITS = (2, 4, 8, 16)
MAX_FILE_BEATS = 100_000


def _damaged(path: Path, problem: str, track: int, tick: int, file_ppq: int) -> InputFileError:
    return InputFileError(f"{path}: {problem} (track {track + 1}, beat {tick // file_ppq + 1}); {EXPORT_AGAIN}")


def _check_message(path: Path, msg: mido.Message | mido.MetaMessage, track: int, tick: int, file_ppq: int) -> None:
    """The one check of what we read from a file beyond mido's: meters we can play, tempi, a bounded length."""
    if msg.type == "time_signature" and (msg.numerator not in METER_NUMERATORS or msg.denominator not in METER_UNITS):
        denominator = msg.denominator if msg.denominator < 1 << 16 else "a huge number"
        raise _damaged(path, f"its time signature {msg.numerator}/{denominator} cannot be played (numerator 1..32, "
                       f"denominator {', '.join(map(str, METER_UNITS))})", track, tick, file_ppq)
    if msg.type == "set_tempo" and msg.tempo <= 0:
        raise _damaged(path, "it sets a tempo of 0 microseconds per beat", track, tick, file_ppq)
    if tick > MAX_FILE_BEATS * file_ppq:
        raise _damaged(path, f"it lasts more than {MAX_FILE_BEATS} beats (a wrong time between events?)",
                       track, tick, file_ppq)


def _check_header(path: Path, source: mido.MidiFile) -> int:
    """The file's ticks per beat; InputFileError for a file type or a time division we do not read."""
    if source.type == 2:
        raise InputFileError(f"{path}: type-2 MIDI files (independent patterns) are not supported; export type 0 or 1")
    if source.type not in (0, 1):
        raise InputFileError(f"{path}: a damaged MIDI file (file type {source.type}, not 0, 1 or 2); {EXPORT_AGAIN}")
    if source.ticks_per_beat < 0:
        raise InputFileError(f"{path}: its times are in SMPTE frames, not beats; export it with a time division in "
                             "ticks per beat (PPQ), as DAWs do by default")
    return source.ticks_per_beat or PPQ  # 0 ticks per beat: a broken header, read at our resolution


def read_midi(path: str | Path) -> MidiInput:
    """Read a MIDI file and check what we use of it (one place): a missing, corrupt, unplayable or note-less file
    is an InputFileError naming it, what is wrong and what to do."""
    path = Path(path)
    if not path.is_file():
        raise _not_a_file(path)
    try:
        source = mido.MidiFile(path, clip=True)
    except (OSError, EOFError, ValueError, KeyError, IndexError, KeySignatureError) as err:
        raise _unreadable(path, err) from None
    file_ppq = _check_header(path, source)
    tempo_us, meter = None, None
    notes: list[Note] = []
    for number, track in enumerate(source.tracks):
        now = 0
        open_notes: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for msg in track:
            now += msg.time
            _check_message(path, msg, number, now, file_ppq)
            if msg.type == "set_tempo" and tempo_us is None:
                tempo_us = msg.tempo
            elif msg.type == "time_signature" and meter is None:
                meter = (msg.numerator, msg.denominator)
            elif msg.type == "note_on" and msg.velocity > 0:
                open_notes.setdefault((msg.channel, msg.note), []).append((now, msg.velocity))
            elif msg.type in ("note_off", "note_on"):
                starts = open_notes.get((msg.channel, msg.note))
                if starts:
                    start, velocity = starts.pop(0)
                    if now > start:
                        notes.append(Note(msg.note, velocity, _scale(start, file_ppq),
                                          max(1, _scale(now - start, file_ppq)), msg.channel))
        for (channel, pitch), starts in open_notes.items():  # notes never closed end with their track
            for start, velocity in starts:
                if now > start:
                    notes.append(Note(pitch, velocity, _scale(start, file_ppq), _scale(now - start, file_ppq), channel))
    if not notes:
        raise InputFileError(f"{path}: the file holds no notes; give a MIDI file with at least one note")
    notes.sort(key=lambda n: (n.start_ticks, n.pitch))
    beats_per_bar, beat_unit = meter or (4, 4)
    return MidiInput(path, source, tuple(notes), tempo_us or DEFAULT_TEMPO_US, beats_per_bar, beat_unit,
                     max(n.end_ticks for n in notes))


_CONDUCTOR = ("set_tempo", "time_signature", "key_signature", "smpte_offset", "end_of_track")
_NAMES = ("track_name", "instrument_name")


def append_input(target: MidiInput, other: MidiInput, offset_ticks: int) -> None:
    """Add ``other``'s tracks to ``target``'s in memory (its files stay untouched), starting at ``offset_ticks``
    (our PPQ), so that writing ``target`` holds both inputs; ``target``'s tempo and meter stay the file's.

    Each track keeps its messages and name (a nameless one is named after its file); tracks holding only tempo
    or meter are left out."""
    to_ppq, from_ppq = target.source.ticks_per_beat or PPQ, other.source.ticks_per_beat or PPQ
    start = round(offset_ticks * to_ppq / PPQ)
    for track in other.source.tracks:
        names, events, now = [], [], 0
        for msg in track:
            now += msg.time
            if msg.type in _NAMES:
                names.append(msg.copy(time=0))
            elif msg.type not in _CONDUCTOR:
                events.append((start + round(now * to_ppq / from_ppq), msg))
        if not any(not msg.is_meta for _, msg in events):
            continue
        moved = mido.MidiTrack(names or [mido.MetaMessage("track_name", name=other.path.stem, time=0)])
        at = 0
        for tick, msg in events:
            moved.append(msg.copy(time=tick - at))
            at = tick
        moved.append(mido.MetaMessage("end_of_track", time=0))
        target.source.tracks.append(moved)


def _note_track(name: str, notes: Iterable[Note], file_ppq: int, program: int | None = None,
                markers: Iterable[tuple[int, str]] = ()) -> mido.MidiTrack:
    """A track of note events from absolute-tick notes (our PPQ), converted to the file's resolution; a note struck
    again while it sounds ends there (`without_overlaps`, as the scheduler plays it live). `markers` (ticks, text),
    e.g. chord symbols, become marker events a DAW shows on its timeline."""
    events: list[tuple[int, int, mido.Message | mido.MetaMessage]] = [
        (round(ticks * file_ppq / PPQ), 0, mido.MetaMessage("marker", text=text)) for ticks, text in markers]
    for n in without_overlaps(notes):
        start = round(n.start_ticks * file_ppq / PPQ)
        end = max(start + 1, round(n.end_ticks * file_ppq / PPQ))
        events.append((start, 1, mido.Message("note_on", channel=n.channel, note=n.pitch, velocity=n.velocity)))
        events.append((end, 0, mido.Message("note_off", channel=n.channel, note=n.pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))  # at one tick, note-offs before note-ons
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
    if program is not None:
        channels = sorted({e[2].channel for e in events if not e[2].is_meta}) or [0]
        track.extend(mido.Message("program_change", channel=c, program=program, time=0) for c in channels)
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def conductor_track(bpm: float, beats_per_bar: int = 4, beat_unit: int = 4,
                    tempo_changes: Sequence[tuple[int, float]] = (), file_ppq: int = PPQ) -> mido.MidiTrack:
    """Tempo map and meter; `tempo_changes` are (ticks in our PPQ, bpm) after the first."""
    track = mido.MidiTrack([
        mido.MetaMessage("track_name", name="tempo", time=0),
        mido.MetaMessage("time_signature", numerator=beats_per_bar, denominator=beat_unit, time=0),
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
    ])
    now = 0
    for ticks, change_bpm in sorted(tempo_changes):
        at = round(ticks * file_ppq / PPQ)
        track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(change_bpm), time=max(0, at - now)))
        now = max(now, at)
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def check_output(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse, before any work, an output path that is a folder or one of the command's input files (a
    UsageError), or whose folder takes no new file (an OutputFileError)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"-o {path}: is a folder; give the name of the file to write, e.g. {path / 'out.mid'}")
    if path.suffix.lower() not in MIDI_SUFFIXES:  # out.txt would hold MIDI that nothing opens as such
        raise UsageError(f"-o {path}: the output is a MIDI file; give a name ending in .mid, e.g. "
                         f"-o {path.with_suffix('.mid')}")
    for given in inputs:
        if path.exists() and Path(given).exists() and os.path.samefile(path, given):
            other = path.with_name(f"{path.stem}-companion{path.suffix or '.mid'}")
            raise UsageError(f"-o {path} is the input file {given}: writing there would overwrite your input; "
                             f"give another output name, e.g. -o {other}")
    target = regular_target(path)  # a device, a FIFO: refused; a link: its target is written
    try:
        with tempfile.TemporaryFile(dir=target.parent):  # gone as soon as it is closed
            pass
    except OSError as err:
        raise OutputFileError.cannot_write(path, err) from None
    return path


def save_atomically(midi: mido.MidiFile, path: str | Path) -> Path:
    """Write a MIDI file whole or not at all, into a regular file only (writing.write_atomically)."""
    return write_atomically(path, lambda handle: midi.save(file=handle))


def _track_name(track: mido.MidiTrack) -> str | None:
    return next((msg.name for msg in track if msg.type == "track_name"), None)


def write_with_answer(source: MidiInput, generated: Sequence[Note], path: str | Path,
                      replace_companion: bool = False, markers: Sequence[tuple[int, str]] = ()) -> Path:
    """Type-1 file: the input's tracks unchanged (tempo and meter with them), then one `companion` track.

    `replace_companion` leaves out the input's own `companion` track (a recorded take whose answers are replayed).
    """
    out = mido.MidiFile(type=1, ticks_per_beat=source.source.ticks_per_beat or PPQ)
    out.tracks.extend(track.copy() for track in source.source.tracks
                      if not (replace_companion and _track_name(track) == COMPANION_TRACK))
    out.tracks.append(_note_track(COMPANION_TRACK, generated, out.ticks_per_beat, markers=markers))
    return save_atomically(out, path)


def write_take(path: str | Path, tracks: Sequence[tuple[str, Sequence[Note]]], bpm: float,
               beats_per_bar: int = 4, beat_unit: int = 4,
               tempo_changes: Sequence[tuple[int, float]] = ()) -> Path:
    """A recorded take or a demo: a tempo track, then one named track per part."""
    out = mido.MidiFile(type=1, ticks_per_beat=PPQ)
    out.tracks.append(conductor_track(bpm, beats_per_bar, beat_unit, tempo_changes))
    out.tracks.extend(_note_track(name, notes, PPQ) for name, notes in tracks)
    return save_atomically(out, path)
