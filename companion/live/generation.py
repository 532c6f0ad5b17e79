"""The generator worker: model inference off every timing thread, streamed into the scheduler within a lookahead."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from companion.core.events import RequestAnswer
from companion.live.scheduler import LATE_TOLERANCE_NS, Clock, Scheduler
from companion.midi.realtime import HARMONY_PRIORITY as GENERATION_PRIORITY
from companion.midi.realtime import try_realtime
from companion.worker.generators import Generator

LOOKAHEAD_BEATS = 2.0  # decode at most this far ahead of the playhead (ReaLJam's lookahead)
THROTTLE_WAIT_S = 0.01  # while held at the horizon, re-check cancel, close and tempo this often
_STOP = object()


def describe_answer(request: RequestAnswer, model: str) -> str:
    """The log's line for an answer asked of the model: its tag, bars, model, seed and what it heard."""
    bar_ticks = request.phrase.bar_ticks
    first, last = request.start_ticks // bar_ticks + 1, -(-request.end_ticks // bar_ticks)
    bars = f"bar {first}" if last <= first else f"bars {first}-{last}"
    heard = len(request.phrase.notes)
    return f"{request.tag}: {bars} from the {model} model (seed {request.seed}, {heard} notes heard)"


class GenerationWorker:
    """One thread runs the generator on each request in turn and hands its notes to the scheduler one by one.

    The stream is lazy: the worker holds a decoded note until it is within the lookahead of the playhead, so a
    cancel costs little and a long answer never floods the scheduler. A request cancelled while queued costs no
    model work; a newer request queued to start at or before a held note supersedes the one being decoded (a
    duet replacing the tentative rest of its plan). A note decoded after its time is dropped and counted: a
    late token never delays the notes after it.
    """

    def __init__(self, generator: Generator, scheduler: Scheduler, clock: Clock, *,
                 log: Callable[[str, str], None], closed: threading.Event,
                 lookahead_beats: float = LOOKAHEAD_BEATS) -> None:
        self.generator = generator
        self.lookahead_beats = lookahead_beats
        self.last_first_note_ms: float | None = None  # request -> first decoded note, the last answer
        self.late_notes = 0
        self._scheduler = scheduler
        self._clock = clock
        self._log = log
        self._closed = closed
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._cancelled: set[str] = set()
        self._recent: deque[str] = deque(maxlen=64)  # recent answer tags, so a panic can stop their generation
        self._queued_starts: dict[str, int] = {}

    def request(self, request: RequestAnswer) -> None:
        """Queue an answer (engine thread)."""
        with self._lock:
            self._recent.append(request.tag)
            self._queued_starts[request.tag] = request.start_ticks
        self._requests.put(request)

    def cancel(self, tag: str) -> None:
        """Stop generating `tag` (its scheduled notes are the scheduler's to stop)."""
        with self._lock:
            self._cancelled.add(tag)

    def cancel_all(self) -> None:
        """Panic: stop every recent answer's generation."""
        with self._lock:
            self._cancelled.update(self._recent)

    def stop(self) -> None:
        self._requests.put(_STOP)

    def run(self) -> None:
        """The worker thread's body; returns after `stop()`."""
        if getattr(self.generator, "runs_elsewhere", False):  # it only waits on a pipe: real-time, never preempted
            try_realtime(GENERATION_PRIORITY)  # holding the interpreter lock while the scheduler needs it
        while True:
            request = self._requests.get()
            if request is _STOP:
                return
            with self._lock:
                self._queued_starts.pop(request.tag, None)
            if not self._stopped(request.tag):
                self._play(request)
            with self._lock:  # forget cancel marks of answers no longer tracked
                self._cancelled.intersection_update(self._recent)

    def _play(self, request: RequestAnswer) -> None:
        started_ns = time.monotonic_ns()
        first, late = True, 0
        try:
            for note in self.generator.stream(request):
                if first:
                    self.last_first_note_ms = (time.monotonic_ns() - started_ns) / 1e6
                    first = False
                if not self._hold_until_horizon(request.tag, note.start_ticks):
                    break
                if time.monotonic_ns() - self._clock.timebase().ns_at(note.start_ticks) > LATE_TOLERANCE_NS:
                    late += 1  # the scheduler would skip it; never delay the notes after it
                    continue
                self._scheduler.submit((note,), request.tag)
        except Exception as err:  # a model failure loses this answer, never the session
            self._log("error", f"the {self.generator.name} model failed on an answer: {err}")
        if late:
            self.late_notes += late
            self._log("warning", f"{request.tag}: {late} note(s) came from the {self.generator.name} model "
                                 "after their time and were dropped")

    def _stopped(self, tag: str, note_ticks: int | None = None) -> bool:
        """Cancelled, closing, or superseded: a newer request waiting in the queue starts by `note_ticks`."""
        with self._lock:
            if tag in self._cancelled or self._closed.is_set():
                return True
            return note_ticks is not None and any(
                start <= note_ticks for queued, start in self._queued_starts.items() if queued not in self._cancelled)

    def _hold_until_horizon(self, tag: str, start_ticks: int) -> bool:
        """Wait until `start_ticks` is within the lookahead of the playhead; False once stopped or superseded."""
        while not self._stopped(tag, start_ticks):
            timebase = self._clock.timebase()
            horizon_ticks = round(self.lookahead_beats * timebase.beat_ticks)
            now_ns = time.monotonic_ns()
            if start_ticks - timebase.ticks_at(now_ns) <= horizon_ticks:
                return True
            wait_s = (timebase.ns_at(start_ticks - horizon_ticks) - now_ns) / 1e9
            self._closed.wait(min(max(wait_s, 0.0), THROTTLE_WAIT_S))
        return False
