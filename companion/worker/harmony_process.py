"""The real-time process's side of the harmony worker: the chorale models run in a process of their own.

The harmony thread here keeps a `RemoteHarmonizer` per model (the `HarmonizerLike` the harmony worker and its pool
drive, unchanged): each operation goes to `companion.worker.harmony_main` in order, numbered, and that process sends
back the coming step's chords for every soprano whenever they change. A melody note is a lookup in the chords that
follow the last operation; when none do yet (the model is still building them, or its process is restarting), the
note is voiced by rule (`voicing.rule_chord`) at once, never after a wait, and the model takes its own step after.
If the process dies, hangs or says something that is not ours, it is killed, the log says so, rule voicings carry
the harmony, and a new one is started (later and later if they keep failing); the models start afresh there.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from companion.errors import CheckpointError
from companion.harmony.pool import PRIMED_POSITIONS
from companion.harmony.voicing import Voices, chord_voices, rule_chord
from companion.worker.process import LogLine, Supervised, WorkerChild
from models.chorale.register import fold, register

log = logging.getLogger("companion")

READY_TIMEOUT_S = 60.0  # torch and the model load in the child: seconds on a busy machine
HANG_S = 3.0  # chords awaited this long after an operation: the process is stuck


class HarmonyProcess(Supervised):
    """The harmony worker process, its stand-in models, and a new process whenever one fails."""

    label = "harmony worker process"

    def __init__(self, checkpoint: str | Path | None = None, count: int = PRIMED_POSITIONS, *,
                 log_line: LogLine | None = None, argv: list[str] | None = None, hang_s: float = HANG_S) -> None:
        super().__init__(argv or [sys.executable, "-m", "companion.worker.harmony_main", "--models", str(count),
                                  *(["--checkpoint", str(checkpoint)] if checkpoint else [])])
        self._log_line = log_line or (lambda level, text: getattr(log, level, log.info)(text))
        self.hang_s = hang_s
        self.models: list[RemoteHarmonizer] = []
        self._info: dict[str, Any] = {}
        self._failed: str | None = None  # the first process could not load its model: why

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> list[RemoteHarmonizer]:
        """Start the process and wait for its models (on the harmony worker's thread, as a model load is);
        CheckpointError when it cannot load them."""
        self._spawn()
        deadline = time.monotonic() + timeout_s
        while not self._info and self._failed is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._info:
            self.close()
            raise CheckpointError(self._failed or f"the harmony worker process gave no sign of life in {timeout_s:g} s")
        return self.models

    def _say(self, level: str, text: str) -> None:
        self._log_line(level, text)

    # --- what it says -----------------------------------------------------------------------------------------

    def _on_message(self, child: WorkerChild, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "harmony_chords":
            index = message["model"]
            if child is self._child and 0 <= index < len(self.models):
                self.models[index].receive(message["seq"], message["chords"])
        elif kind == "harmony_ready":
            self._ready(child, message)
        elif kind == "fatal":
            if not self._info:  # the first process could not load: harmony turns off with its reason
                self._failed = f"the harmony worker process could not load its model: {message['text']}"
                self._give_up(child)
            else:
                self.fault(child, f"stopped: {message['text']}")
        else:
            self.fault(child, f"sent a {kind!r} message, which is not one of the harmony worker's")

    def _ready(self, child: WorkerChild, message: dict[str, Any]) -> None:
        first = not self._info
        self._info = message
        child.ready.set()
        self._faults_in_a_row = 0
        if first:
            self.models = [RemoteHarmonizer(self, i, message) for i in range(message["models"])]
            self._log_line("info", f"the chorale harmony model is ready in its worker process (pid {child.pid}, "
                                   f"{time.monotonic() - child.started:.1f} s)")
            return
        self._log_line("info", f"a new harmony worker process (pid {child.pid}) is ready: the model voices again")
        for model in self.models:
            model.resync()

    def _on_gone(self, child: WorkerChild, why: str) -> None:
        if not self._info and self._failed is None:
            self._failed = f"the harmony worker process {why} before its model was ready"
            return
        self.fault(child, why)

    def fault(self, child: WorkerChild, why: str) -> None:
        self._replace(child, why, "harmony is voiced by rule until a new one is ready")

    def send(self, index: int, seq: int, op: str, args: list[Any]) -> None:
        child = self._child
        if child is not None and child.ready.is_set():
            child.send("harmony_op", model=index, seq=seq, op=op, args=args)

    def check(self, waiting_since: float) -> None:
        """A model has waited for its chords since `waiting_since`: past `hang_s`, the process is stuck."""
        child = self._child
        if child is not None and child.ready.is_set() and time.monotonic() - waiting_since > self.hang_s:
            self.fault(child, f"sent no chords for {self.hang_s:g} s (hung)")


class RemoteHarmonizer:
    """One chorale model in the harmony worker process, as the harmony worker here drives it (`HarmonizerLike`).

    `step` is a lookup in the chords the process sent for the state after the last operation (the model there
    takes the same step from the same chords, so both agree), or a rule voicing when they have not come."""

    runs_elsewhere = True  # warmed in its own process

    def __init__(self, process: HarmonyProcess, index: int, info: dict[str, Any]) -> None:
        self._process = process
        self._index = index
        self.voice_ranges = [(int(lo), int(hi)) for lo, hi in info["voice_ranges"]]
        self._row = {int(p): i for i, p in enumerate(info["rows"])}  # model-space soprano (-1 rest) -> row
        self._max_drop = int(info["max_drop"])
        self._temperature = 1.0
        self.key_lock: frozenset[int] | None = None
        self.octave_shift_semitones = 0
        self.shift_changed = False
        self.fallbacks = 0  # notes voiced by rule: no chords had come
        self._seq = 0
        self._sent_at = time.monotonic()
        # (the operation they follow, soprano/alto/tenor/bass of row 0, then row 1, ...), set by the reader
        self._chords: tuple[int, list[int]] | None = None
        self._pending: tuple[int | None] | None = None  # the step returned and not yet sent to the process
        self._undo_shift: int | None = None  # the octave shift before the last step, while it can be taken again
        self._last: Voices | None = None
        self._seed, self._position, self._steps = 0, 0, 0

    # --- settings ----------------------------------------------------------------------------------------------

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if value != self._temperature:
            self._temperature = value
            self._op("temperature", value)

    def set_key_lock(self, pitch_classes: Iterable[int] | None) -> None:
        lock = None if pitch_classes is None else frozenset(int(pc) % 12 for pc in pitch_classes)
        if lock is not None and not lock:
            raise ValueError("key lock needs at least one pitch class")
        if lock != self.key_lock:
            self.key_lock = lock
            self._op("lock", None if lock is None else sorted(lock))

    # --- steps -------------------------------------------------------------------------------------------------

    def reset(self, seed: int = 0, *, position_in_beat: int = 0) -> None:
        self._pending, self._undo_shift, self._last = None, None, None
        self.octave_shift_semitones, self.shift_changed = 0, False
        self._seed, self._position, self._steps = seed, position_in_beat, 0
        self._op("reset", seed, position_in_beat)

    def chords_ready(self) -> bool:
        chords = self._chords
        return self._pending is None and chords is not None and chords[0] == self._seq

    def step(self, soprano: int | None) -> Voices:
        if self._pending is not None:
            self.finish_step()
        if soprano is not None and not 0 <= soprano <= 127:
            raise ValueError(f"soprano pitch {soprano} is not a MIDI note number (0..127)")
        ready = self.chords_ready()
        self._undo_shift = self.octave_shift_semitones
        self._fold(soprano)
        voices = self._looked_up(soprano) if ready else self._by_rule(soprano)
        self._pending = (soprano,)
        self._last = voices
        return voices

    def finish_step(self, interrupted: Any = None) -> bool:
        """The step goes to the process, which builds the next chords: nothing left to do on this thread."""
        if self._pending is not None:
            (soprano,), self._pending = self._pending, None
            self._steps += 1
            self._op("step", soprano)
        return True

    def prepare(self, interrupted: Any = None) -> bool:
        return True  # the process brings every model's chords up to date with each operation by itself

    def redo_step(self, soprano: int | None) -> Voices | None:
        """The last step again under the settings now in force: voiced by rule here at once (the left hand's
        chord), and taken again by the model there."""
        if self._undo_shift is None:
            return None
        self.octave_shift_semitones = self._undo_shift
        if self._pending is not None:  # not sent yet: it is simply another step
            self._pending = None
            return self.step(soprano)
        self._fold(soprano)  # as the model there folds it when it takes the step again
        voices = self._by_rule(soprano)
        self._last = voices
        self._op("redo", soprano)
        return voices

    def _fold(self, soprano: int | None) -> None:
        """The octave shift for this melody note, as the model folds it (`register.fold`)."""
        if soprano is None:
            self.shift_changed = False
            return
        shift = fold(soprano, self.octave_shift_semitones, self.voice_ranges[0])
        self.shift_changed = shift != self.octave_shift_semitones
        self.octave_shift_semitones = shift

    # --- the chords --------------------------------------------------------------------------------------------

    def receive(self, seq: int, chords: list[int]) -> None:
        """The process's chords after operation `seq` (the reader thread; one assignment, read whole)."""
        if len(chords) == 4 * len(self._row):
            self._chords = (seq, chords)

    def _looked_up(self, soprano: int | None) -> Voices:
        start = 4 * self._row[-1 if soprano is None else soprano + self.octave_shift_semitones]
        alto, tenor, bass = (register(p if p >= 0 else None, self.octave_shift_semitones, self._max_drop)
                             for p in self._chords[1][start + 1 : start + 4])  # type: ignore[index]
        return alto, tenor, bass

    def _by_rule(self, soprano: int | None) -> Voices:
        self.fallbacks += 1
        self._process.check(self._sent_at)
        if soprano is None:
            return (None, None, None)
        return chord_voices(soprano, rule_chord(soprano, self.key_lock, self._last), self._last, self.voice_ranges)

    def _op(self, op: str, *args: Any) -> None:
        self._seq += 1
        self._sent_at = time.monotonic()
        self._process.send(self._index, self._seq, op, list(args))

    def resync(self) -> None:
        """A new process: its model starts afresh at this model's place in the beat, with its settings."""
        self._position = (self._position + self._steps) % PRIMED_POSITIONS  # a step not yet sent goes after
        self._steps, self._undo_shift, self.octave_shift_semitones = 0, None, 0
        self._op("reset", self._seed, self._position)
        if self.key_lock is not None:
            self._op("lock", sorted(self.key_lock))
        if self._temperature != 1.0:
            self._op("temperature", self._temperature)

    def close(self) -> None:
        self._process.close()


def remote_harmonizers(checkpoint: str | Path | None = None, count: int = PRIMED_POSITIONS, *,
                       log_line: LogLine | None = None) -> list[RemoteHarmonizer]:
    """The harmony worker's loader for the live session: `count` models in a process of their own."""
    return HarmonyProcess(checkpoint, count, log_line=log_line).start()
