"""`companion generate harmonize`: a melody file voiced by the same mode and worker that harmonize live."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
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
from companion.core.theory import estimate_key
from companion.errors import InputFileError
from companion.harmony import HarmonizerLike, HarmonyWorker, load_harmonizers
from companion.midifile import MidiInput

log = logging.getLogger("companion")

TICK_EVERY = 10  # the engine is ticked this often (in ticks) while the melody is played through it
DRUM_CHANNEL = 9
CHORD_WINDOW_TICKS = PPQ // 8


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
                   loader: Callable[[], Sequence[HarmonizerLike]] | None = None) -> list[Note]:
    """Harmony notes under the input's top voice, as harmonize mode would play them live (same mode, same worker).

    `settings` holds EngineSettings fields (harmony_style, change_every, harmony_channels, temperature ...);
    others are ignored. The input's notes are not changed; the caller writes them with the harmony track.
    """
    engine_settings = _settings(source, seed, settings)
    melody_channel = 1 if engine_settings.chord_channel == 0 else 0
    melody = melody_of(source.notes, engine_settings.chord_channel, melody_channel)
    if not melody:
        raise InputFileError(f"{source.path}: no melody to harmonize (only drums?); give a file with a tune in it")
    chords = [n for n in source.notes if engine_settings.chord_channel is not None
              and n.channel == engine_settings.chord_channel]
    recorder = _NoteRecorder()
    logs: list[tuple[str, str]] = []
    worker = HarmonyWorker(recorder.send_now, loader or load_harmonizers, seed=seed,
                           log_line=lambda level, text: logs.append((level, text)))
    worker.load()
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
    index = 0
    for now in range(0, end_ticks + 2 * TICK_EVERY, TICK_EVERY):
        while index < len(events) and events[index][0] <= now:
            ticks, _, message = events[index]
            _run(worker, recorder, engine.handle(message, ticks), ticks)
            index += 1
        _run(worker, recorder, engine.tick(now), now)
    worker.process(StopHarmony(end_ticks, "end of file"))
    recorder.close_all(end_ticks)
    for level, text in logs:
        getattr(log, level, log.info)(text)
    return sorted(recorder.notes, key=lambda n: (n.start_ticks, n.channel, n.pitch))


def _run(worker: HarmonyWorker, recorder: _NoteRecorder, commands: list, now_ticks: int) -> None:
    for command in commands:
        if not isinstance(command, HarmonyCommand):
            continue
        if isinstance(command, HarmonyStep):
            recorder.now_ticks = command.step_index * TICKS_PER_16TH  # a move under a held note is on its beat
        else:
            recorder.now_ticks = command.now_ticks
        worker.process(command)
