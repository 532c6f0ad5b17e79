"""`companion generate harmonize`: a melody file voiced by the same mode and worker that harmonize live."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from companion.core.engine import Engine, EngineSettings
from companion.core.events import (
    PPQ,
    TICKS_PER_16TH,
    ChannelMessage,
    HarmonyCommand,
    HarmonyStep,
    Note,
    NoteOff,
    NoteOn,
    StopHarmony,
)
from companion.core.modes.harmonize import HarmonyPulse
from companion.core.theory import estimate_key
from companion.errors import InputFileError
from companion.files.midifile import MidiInput
from companion.harmony.chord_plan import chord_plan, symbol_markers
from companion.harmony.chord_worker import ChordLoader, ChordWorker, load_chord_model, make_worker
from companion.harmony.worker import HarmonizerLike, HarmonyWorker, load_harmonizers

log = logging.getLogger("companion")

TICK_EVERY = 10  # the engine is ticked this often (in ticks) while the melody is played through it
# The harmonizer takes one model step per 16th under the melody (tens of ms each on a laptop's CPU): longer
# melodies are refused before any work, with what to do. 16,384 16ths: 1,024 bars of 4/4, ~34 min at 120 BPM.
MAX_STEPS = 16_384
PROGRESS_PARTS = 10  # on a melody of PROGRESS_FROM_STEPS 16ths or more the log says how far it got, 10 times
PROGRESS_FROM_STEPS = 1_024
DRUM_CHANNEL = 9
CHORD_WINDOW_TICKS = PPQ // 8
DEFAULT_STYLE = "pad"


def melody_of(notes: Sequence[Note], exclude_channel: int | None = None, channel: int = 0) -> list[Note]:
    """The top voice, on `channel`: of notes starting together (within a 32nd) the highest; a lower note that
    starts and ends under a held melody note is an inner voice; each melody note ends where the next begins.
    Drums (channel 10) and `exclude_channel` (the left hand's chords) are never melody."""
    candidates = sorted((n for n in notes if n.channel not in (DRUM_CHANNEL, exclude_channel)),
                        key=lambda n: (n.start_ticks, -n.pitch))
    tops: list[Note] = []
    for note in candidates:
        if tops and note.start_ticks - tops[-1].start_ticks < CHORD_WINDOW_TICKS:
            if note.pitch > tops[-1].pitch:
                tops[-1] = note  # a higher note of the same (rolled) chord
            continue
        if tops and note.pitch < tops[-1].pitch and note.end_ticks <= tops[-1].end_ticks:
            continue  # an inner voice under a held melody note
        tops.append(note)
    melody = []
    for i, note in enumerate(tops):
        end = note.end_ticks if i + 1 == len(tops) else min(note.end_ticks, tops[i + 1].start_ticks)
        melody.append(dataclasses.replace(note, duration_ticks=max(1, end - note.start_ticks), channel=channel))
    return melody


class _NoteRecorder:
    """Stands in for the scheduler: turns the worker's note-ons and note-offs at `now_ticks` into Notes."""

    def __init__(self) -> None:
        self.now_ticks = 0
        self.notes: list[Note] = []
        self._open: dict[tuple[int, int], tuple[int, int]] = {}  # (channel, pitch) -> (start, velocity)

    def send_now(self, message: ChannelMessage, tag: str) -> None:
        if isinstance(message, NoteOn):
            self._close(message.channel, message.note)
            self._open[(message.channel, message.note)] = (self.now_ticks, message.velocity)
        elif isinstance(message, NoteOff):
            self._close(message.channel, message.note)

    def _close(self, channel: int, pitch: int) -> None:
        opened = self._open.pop((channel, pitch), None)
        if opened is not None:
            start, velocity = opened
            self.notes.append(Note(pitch, velocity, start, max(1, self.now_ticks - start), channel))

    def close_all(self, at_ticks: int) -> None:
        self.now_ticks = at_ticks
        for channel, pitch in list(self._open):
            self._close(channel, pitch)


def _settings(source: MidiInput, seed: int, settings: dict[str, Any]) -> EngineSettings:
    known = {f.name for f in dataclasses.fields(EngineSettings)}
    chosen = {k: v for k, v in settings.items() if k in known}
    used = {n.channel for n in source.notes}
    free = next((c for c in range(16) if c not in used and c != DRUM_CHANNEL), 0)
    chosen.setdefault("output_channel", free)
    chosen.setdefault("harmony_style", DEFAULT_STYLE)  # the lead-sheet harmonizer unless told otherwise
    if chosen.get("key_lock", True) and chosen.get("key") is None:
        key = estimate_key((n.pitch, float(n.duration_ticks)) for n in source.notes)
        if key is not None:
            chosen["key"] = key.name  # the whole file is known: lock to its key from the first note
    try:
        return EngineSettings(**{**chosen, "mode": "harmonize", "seed": seed, "thru": False,
                                 "beats_per_bar": source.beats_per_bar, "beat_unit": source.beat_unit})
    except ValueError as err:
        raise InputFileError(f"harmonize settings: {err}") from None


def harmonize_file(source: MidiInput, *, seed: int, settings: dict[str, Any],
                   loader: Callable[[], Sequence[HarmonizerLike]] | None = None,
                   chord_loader: ChordLoader | None = None) -> list[Note]:
    """Harmony notes under the input's top voice (see `harmonize_with_symbols`)."""
    return harmonize_with_symbols(source, seed=seed, settings=settings, loader=loader, chord_loader=chord_loader)[0]


def harmonize_with_symbols(source: MidiInput, *, seed: int, settings: dict[str, Any],
                           loader: Callable[[], Sequence[HarmonizerLike]] | None = None,
                           chord_loader: ChordLoader | None = None) -> tuple[list[Note], list[tuple[int, str]]]:
    """Harmony notes under the input's top voice, as harmonize mode would play them live (same mode, same worker),
    and the chord symbols played with their ticks (lead-sheet styles; none for "chorale").

    `settings` holds EngineSettings fields (harmony_style, change_every, harmony_channels, temperature ...);
    others are ignored. A lead-sheet style plays the chords the chord model plans over the whole melody
    (looking ahead). The input's notes are not changed; the caller writes them with the harmony track.
    """
    engine_settings = _settings(source, seed, settings)
    melody_channel = 1 if engine_settings.chord_channel == 0 else 0
    melody = melody_of(source.notes, engine_settings.chord_channel, melody_channel)
    if not melody:
        raise InputFileError(f"{source.path}: no melody to harmonize (only drums?); give a file with a tune in it")
    chords = [n for n in source.notes if engine_settings.chord_channel is not None
              and n.channel == engine_settings.chord_channel]
    steps = _check_length(source, melody)
    recorder = _NoteRecorder()
    logs: list[tuple[str, str]] = []
    changes: list[tuple[int, str]] = []
    stepper = None if engine_settings.harmony_style == "chorale" else (chord_loader or load_chord_model)()
    worker = make_worker(engine_settings.harmony_style, recorder.send_now, loader or load_harmonizers,
                         lambda: stepper, seed=seed, log_line=lambda level, text: logs.append((level, text)),
                         **({} if stepper is None else {"on_chord": lambda name: changes.append((recorder.now_ticks,
                                                                                                 name))}))
    worker.load()
    if isinstance(worker, ChordWorker):
        worker.plan = chord_plan(stepper, melody, engine_settings)
    if worker.failed is not None:
        from companion.errors import CheckpointError

        raise CheckpointError(worker.failed)
    engine = Engine(engine_settings)
    # at one tick: the left hand's note-offs, then the melody's, then note-ons (chords first, so they steer)
    events = [(n.end_ticks, 0, NoteOff(n.channel, n.pitch)) for n in chords]
    events += [(n.end_ticks, 1, NoteOff(n.channel, n.pitch)) for n in melody]
    events += [(n.start_ticks, 2, NoteOn(n.channel, n.pitch, n.velocity)) for n in chords]
    events += [(n.start_ticks, 3, NoteOn(n.channel, n.pitch, n.velocity)) for n in melody]
    events.sort(key=lambda e: (e[0], e[1]))
    end_ticks = max(n.end_ticks for n in melody)
    index, reported = 0, 0
    for now in _tick_times(melody, end_ticks + 2 * TICK_EVERY, engine_settings.bar_ticks):
        while index < len(events) and events[index][0] <= now:
            ticks, _, message = events[index]
            _run(worker, recorder, engine.handle(message, ticks), end_ticks)
            index += 1
        _run(worker, recorder, engine.tick(now), end_ticks)
        part = min(now, end_ticks - 1) * PROGRESS_PARTS // end_ticks
        if steps >= PROGRESS_FROM_STEPS and part > reported:
            reported = part
            log.info("harmonize: %d%% done (bar %d of %d)", 100 * part // PROGRESS_PARTS,
                     now // engine_settings.bar_ticks + 1, -(-end_ticks // engine_settings.bar_ticks))
    worker.process(StopHarmony(end_ticks, "end of file"))
    recorder.close_all(end_ticks)
    for level, text in logs:
        getattr(log, level, log.info)(text)
    notes = sorted(recorder.notes, key=lambda n: (n.start_ticks, n.channel, n.pitch))
    return notes, symbol_markers(changes)


def _check_length(source: MidiInput, melody: Sequence[Note]) -> int:
    """The model steps the melody takes (16ths under its notes); InputFileError past MAX_STEPS, before any work."""
    steps = sum(-(-n.duration_ticks // TICKS_PER_16TH) for n in melody)
    if steps > MAX_STEPS:
        bars = MAX_STEPS * TICKS_PER_16TH // source.bar_ticks
        raise InputFileError(f"{source.path}: its melody lasts {steps:,} 16th notes; `companion generate harmonize` "
                             f"takes up to {MAX_STEPS:,} (about {bars:,} bars of {source.beats_per_bar}/"
                             f"{source.beat_unit}) at a time: cut the file into parts and harmonize each")
    return steps


def _tick_times(melody: Sequence[Note], until_ticks: int, bar_ticks: int) -> Iterator[int]:
    """Every TICK_EVERY ticks while a melody note sounds and for a bar after it (the engine ends the phrase
    after a bar of rest); a longer silence is skipped: the work follows the notes, not the file's length.
    `melody` is sorted and its notes do not overlap (melody_of)."""
    quiet_ticks = bar_ticks + 4 * TICKS_PER_16TH
    now = 0
    for note in melody:
        now = max(now, note.start_ticks - note.start_ticks % TICK_EVERY)
        last = min(until_ticks, note.end_ticks + quiet_ticks)
        while now < last:
            yield now
            now += TICK_EVERY


def _run(worker: HarmonyWorker, recorder: _NoteRecorder, commands: list, end_ticks: int) -> None:
    for command in commands:
        if not isinstance(command, HarmonyCommand):
            continue
        if isinstance(command, HarmonyStep):
            recorder.now_ticks = command.step_index * TICKS_PER_16TH  # a move under a held note is on its beat
            if isinstance(command, HarmonyPulse) and recorder.now_ticks >= end_ticks:
                continue  # the file ends with the tune: a clock style strikes nothing after it
        else:
            recorder.now_ticks = command.now_ticks
        worker.process(command)
