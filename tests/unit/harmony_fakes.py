"""What the harmony worker's tests share: a recording send, a scripted model, the engine played note by note."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from companion.core.engine import Engine, EngineSettings
from companion.core.events import PPQ, ChannelMessage, HarmonizeNote, HarmonyCommand, NoteOff, NoteOn
from companion.harmony.worker import HarmonyWorker, load_harmonizers

RANGES = [(60, 81), (52, 74), (46, 69), (36, 66)]
Voices = tuple[int | None, int | None, int | None]
# (pitch, start_ticks, duration_ticks): a hymn-like line, a rest, an off-beat note
MELODY = [(72, 0, 470), (74, 480, 470), (76, 960, 950), (74, 1920, 230), (72, 2160, 700), (71, 3360, 460)]


class RecordingSend:
    """Stands in for Scheduler.send_now: keeps what was sent and what is sounding."""

    def __init__(self) -> None:
        self.messages: list[tuple[ChannelMessage, str]] = []
        self.sounding: set[tuple[int, int]] = set()

    def __call__(self, message: ChannelMessage, tag: str) -> None:
        self.messages.append((message, tag))
        key = (message.channel, message.note)  # type: ignore[union-attr]
        if isinstance(message, NoteOn):
            assert key not in self.sounding, f"{key} struck again while sounding"
            self.sounding.add(key)
        elif isinstance(message, NoteOff):
            assert key in self.sounding, f"note-off for {key}, which is not sounding"
            self.sounding.discard(key)

    def note_ons(self) -> list[NoteOn]:
        return [m for m, _ in self.messages if isinstance(m, NoteOn)]


class FakeHarmonizer:
    """A scripted model: voices from `script(soprano, step_number)`; records what it was asked."""

    def __init__(self, script: Callable[[int | None, int], Voices]) -> None:
        self.script = script
        self.temperature = 1.0
        self.key_lock: frozenset[int] | None = None
        self.octave_shift_semitones = 0
        self.shift_changed = False
        self.sopranos: list[int | None] = []
        self.resets: list[tuple[int, int]] = []
        self.finished = 0
        self.prepared: list[frozenset[int] | None] = []  # the key lock of each table rebuilt by prepare()
        self.fresh = True  # whether the coming step's chords were prepared with the settings in force
        self.voice_ranges = list(RANGES)

    def reset(self, seed: int = 0, *, position_in_beat: int = 0) -> None:
        self.resets.append((seed, position_in_beat))
        self.sopranos = []
        self.finished = 0
        self.fresh = True

    def step(self, soprano: int | None) -> Voices:
        self.sopranos.append(soprano)
        self.stale_steps = getattr(self, "stale_steps", 0) + (not self.fresh)
        return self.script(soprano, len(self.sopranos))

    def finish_step(self, interrupted: Callable[[], bool] | None = None) -> bool:
        self.finished += 1
        self.fresh = True
        return True

    def set_key_lock(self, pitch_classes: Iterable[int] | None) -> None:
        self.key_lock = None if pitch_classes is None else frozenset(pitch_classes)
        self.fresh = False

    def redo_step(self, soprano: int | None) -> Voices | None:
        self.sopranos[-1] = soprano  # the last step, taken again
        self.redone = getattr(self, "redone", 0) + 1
        return self.script(soprano, len(self.sopranos))

    def chords_ready(self) -> bool:
        return self.fresh

    def prepare(self, interrupted: Callable[[], bool] | None = None) -> bool:
        if not self.fresh:
            self.prepared.append(self.key_lock)
            self.fresh = True
        return True


def perform(settings: EngineSettings, melody: list[tuple[int, int, int]], end_ticks: int | None = None,
            every_ticks: int = 10) -> list[HarmonyCommand]:
    """Play `melody` into the real engine tick by tick; the harmony commands it gives, in order."""
    engine = Engine(settings)
    events = [(s, 1, NoteOn(0, p, 100)) for p, s, _ in melody] + [(s + d, 0, NoteOff(0, p)) for p, s, d in melody]
    events.sort(key=lambda e: (e[0], e[1]))
    end = end_ticks if end_ticks is not None else max(s + d for _, s, d in melody) + PPQ
    commands: list = []
    index = 0
    for now in range(0, end + 1, every_ticks):
        while index < len(events) and events[index][0] <= now:
            commands += engine.handle(events[index][2], events[index][0])
            index += 1
        commands += engine.tick(now)
    return [c for c in commands if isinstance(c, HarmonyCommand)]


def worker_for(send: RecordingSend, loader: Callable[[], list], logs: list[tuple[str, str]] | None = None,
               seed: int = 0) -> HarmonyWorker:
    worker = HarmonyWorker(send, loader, log_line=lambda level, text: (logs if logs is not None else []).append(
        (level, text)), seed=seed)
    worker.load()
    return worker


def run(worker: HarmonyWorker, commands: list[HarmonyCommand]) -> None:
    for command in commands:
        worker.process(command, time.monotonic_ns() if isinstance(command, HarmonizeNote) else None)


def chorale(soprano: int | None, step: int) -> Voices:
    return (67, 64, 48)


def tiny(path: Path) -> Callable[[], list]:
    return lambda: load_harmonizers(path, threads=1)


def poll(predicate: Callable[[], object], timeout_s: float = 20.0) -> bool:
    """Wait until `predicate()` is true (True), or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def harmony_process_pids() -> set[int]:
    """Our chorale harmony worker processes: children of this process (Linux's /proc)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and b"companion.worker.harmony_main" in cmdline:
            pids.add(int(entry.name))
    return pids
