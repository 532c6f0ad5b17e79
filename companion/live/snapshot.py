"""The UI's picture of the runtime: the engine thread publishes its small part, the caller's thread adds the rest."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from companion.core.engine import Engine, EngineSettings
from companion.core.events import Note
from companion.core.notes import notes_from_wire
from companion.core.timebase import Timebase
from companion.presets.session import PresetSession

LATENESS_REFRESH_NS = 500_000_000


class Snapshots:
    """What the picture is built from: the engine's published part, recent note traffic, counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._published: dict[str, Any] = {}
        self._settings_seen: EngineSettings | None = None
        self._settings_dict: dict[str, Any] = {}
        self._lateness: dict[str, int] = {}
        self._lateness_at_ns = 0
        # Recent note traffic for the piano roll: (time_ns, bytes); appends are atomic and cheap on every thread.
        self.wire_in: deque[tuple[int, list[int]]] = deque(maxlen=512)
        self.wire_out: deque[tuple[int, Sequence[int]]] = deque(maxlen=512)
        self.counters = {"notes_in": 0, "notes_out": 0, "answers": 0}

    def publish(self, engine: Engine, presets: PresetSession) -> None:
        """The engine-thread-owned part of the UI's picture, kept small: a note arriving now waits for it."""
        snap = {"engine": engine.snapshot(), "settings_obj": engine.settings, **presets.snapshot()}
        with self._lock:
            self._published = snap

    def build(self, rt: Any, ports: dict[str, Any], log_lines: Iterable[tuple[str, str]]) -> dict[str, Any]:
        """A compact picture for the UI of the runtime `rt`, built on the caller's thread from thread-safe reads (the
        engine thread only publishes its own small part): the piano roll's pairing never delays a note."""
        with self._lock:
            snap = dict(self._published)
        now_ns = time.monotonic_ns()
        timebase = rt.clock.timebase()
        ticks = timebase.ticks_at(now_ns)
        bar, beat, _ = timebase.bar_beat(max(0, ticks))
        settings = snap.pop("settings_obj", rt.engine.settings)
        if settings is not self._settings_seen:
            self._settings_seen, self._settings_dict = settings, dataclasses.asdict(settings)
        snap.update({
            "settings": self._settings_dict,
            "beats_per_bar": timebase.beats_per_bar,
            "ports": ports,
            "notes": _piano_roll(self.wire_in, "player", timebase)
            + _piano_roll(self.wire_out, "companion", timebase),
            "planned": _planned(rt.scheduler.planned(), snap.get("engine", {}).get("tentative_from")),
            "bpm": round(timebase.bpm, 2),
            "ticks": ticks,
            "bar": bar,
            "beat": beat,
            "clock": rt.clock_source,
            "clock_running": rt.clock.running,
            "link": rt.clock.status(),  # Link's peers, transport and quantum; None for the other clocks
            "generator": rt.answering_model,
            "generation_ms": rt.generation.last_first_note_ms,
            "counters": {**self.counters, "late_notes": rt.generation.late_notes},
            "malformed": rt.decode_stats.malformed(),  # broken bytes only: every decoded note is no loss
            "harmony": rt.harmony.snapshot() if rt.harmony is not None else None,
            "recording": rt.takes.recording,
            "takes_dir": str(rt.recorder.directory) if rt.recorder is not None else None,
        })
        snap["log"] = list(log_lines)[-20:]
        if now_ns - self._lateness_at_ns > LATENESS_REFRESH_NS:  # sorting the samples is not free: twice a second
            self._lateness, self._lateness_at_ns = rt.scheduler.lateness_stats(), now_ns
        snap["lateness"] = self._lateness
        return snap


MAX_PLANNED = 256  # a piano roll's worth; a long generated piece queues more than any screen shows


def _planned(queued: Sequence[tuple[Note, str]], tentative_from: int | None) -> list[tuple[int, int, int, bool]]:
    """Companion's queued notes as (pitch, start, end, committed): a duet's notes from its next plan's start on are
    tentative (a new plan may replace them); everything else queued will play unless the player interrupts."""
    queued = sorted(queued, key=lambda item: item[0].start_ticks)[:MAX_PLANNED]
    return [(n.pitch, n.start_ticks, n.end_ticks, tentative_from is None or n.start_ticks < tentative_from)
            for n, _ in queued]


def _piano_roll(wire: deque, source: str, timebase: Timebase) -> list[tuple[str, int, int, int | None]]:
    """The recent notes of one direction as (source, pitch, start, end or None while sounding), in ticks."""
    closed, sounding = notes_from_wire(list(wire), timebase.ticks_at)
    return [(source, n.pitch, n.start_ticks, n.end_ticks) for n in closed] + \
        [(source, n.pitch, n.start_ticks, None) for n in sounding]
