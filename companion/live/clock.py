"""The runtime's clock: one object the scheduler, workers and UI hold while its source (internal, the DAW's MIDI
clock, an Ableton Link session) can change under it, from the command line at start or from the UI's chooser."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from companion.core.events import ClockStart, ClockStop, Command, Log, Message
from companion.core.timebase import Timebase
from companion.errors import ClockError
from companion.midi.clock import ClockSender, InternalClock, MidiClockFollower
from companion.midi.link import LinkClock

Source = InternalClock | MidiClockFollower | LinkClock
CLOCK_SOURCES = ("internal", "external", "link")  # the order the UI's chooser steps through


def make_clock(name: str, bpm: float, beats_per_bar: int = 4, beat_unit: int = 4, *,
               start_stop: bool = True, propose_tempo: bool = False) -> Source:
    """A clock source by name; "link" joins the session now (ClockError, one line, when Link is not installed).
    With `propose_tempo` (a tempo the player asked for) Link proposes `bpm` to the session it joins."""
    if name == "external":
        return MidiClockFollower(beats_per_bar=beats_per_bar, beat_unit=beat_unit, initial_bpm=bpm)
    if name == "link":  # alone, Link runs at `bpm`; joining a running session takes its tempo, then proposes ours
        return LinkClock(bpm, beats_per_bar, beat_unit, start_stop=start_stop, propose_tempo=propose_tempo)
    if name == "internal":
        return InternalClock(bpm, beats_per_bar=beats_per_bar, beat_unit=beat_unit)
    raise ValueError(f"unknown clock {name!r}: choose from {', '.join(CLOCK_SOURCES)}")


def source_name(source: Source) -> str:
    if isinstance(source, LinkClock):
        return "link"
    return "external" if isinstance(source, MidiClockFollower) else "internal"


class LiveClock:
    """Reads go to the current source; a switch bumps `epoch`, so plans made on the old grid are dropped.

    Switching is the engine thread's (the runtime's); any thread may read.
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        self._epoch_offset = 0

    def timebase(self) -> Timebase:
        return self.source.timebase()

    @property
    def running(self) -> bool:
        return self.source.running

    @property
    def bpm(self) -> float:
        return self.source.bpm

    @property
    def epoch(self) -> int:
        return self._epoch_offset + self.source.epoch

    def next_transport_ns(self) -> int | None:
        return self.source.next_transport_ns()

    @property
    def name(self) -> str:
        """"internal", "external" (the DAW's MIDI clock) or "link" (an Ableton Link session)."""
        return source_name(self.source)

    def status(self) -> dict[str, Any] | None:
        """Link's peers, transport and quantum for the UI; None for the other sources."""
        return self.source.status() if isinstance(self.source, LinkClock) else None

    # --- the engine thread -----------------------------------------------------------------------------

    def switch(self, source: Source) -> None:
        """Put `source` in place (the old one is closed); readers see the new grid from their next read."""
        old, epoch = self.source, self.epoch
        self.source = source
        self._epoch_offset = epoch + 1 - source.epoch
        if isinstance(old, LinkClock):
            old.close()

    def feed(self, message: Message, time_ns: int) -> None:
        """A MIDI clock message from the input: the DAW's clock, when that is the source."""
        if isinstance(self.source, MidiClockFollower):
            self.source.feed(message, time_ns)

    def set_tempo_and_meter(self, bpm: float | None, beats_per_bar: int, beat_unit: int) -> None:
        """A preset's [clock] bpm and meter: the internal clock takes them, Link proposes the tempo to the session
        and takes the meter as its quantum; the DAW's clock keeps its own."""
        source = self.source
        if isinstance(source, InternalClock | LinkClock):
            if bpm is not None:
                source.set_tempo(bpm)
            source.set_meter(beats_per_bar, beat_unit)

    def take_transport(self) -> list[ClockStart | ClockStop]:
        """A Link session's start/stop since the last call (empty for the other sources)."""
        return self.source.take_transport() if isinstance(self.source, LinkClock) else []

    def internal_here(self, beats_per_bar: int, beat_unit: int) -> InternalClock:
        """An internal clock that goes on from the current position and tempo (switching to it is seamless)."""
        timebase = self.timebase()
        clock = InternalClock(timebase.bpm, beats_per_bar=beats_per_bar, beat_unit=beat_unit)
        clock.start(max(0, timebase.ticks_at(time.monotonic_ns())))
        return clock

    def close(self) -> None:
        """Leave a Link session (idempotent); the other sources hold nothing."""
        if isinstance(self.source, LinkClock):
            self.source.close()


class ClockOut:
    """`--send-clock`: MIDI Beat Clock from the live clock to the outputs, never while the DAW's clock is
    followed (the DAW is the master then); stopped (FC) and started again around a switch of the source."""

    def __init__(self, send: Callable[[Sequence[int]], None], clock: LiveClock, *, wanted: bool,
                 send_at: Callable[[Sequence[int], int], None] | None = None, hand_ahead_ns: int = 0,
                 timed: Callable[[], bool] = lambda: False) -> None:
        self._send, self._clock, self.wanted = send, clock, wanted
        self._timing = {"send_at": send_at, "hand_ahead_ns": hand_ahead_ns, "timed": timed}  # --timed-output
        self._sender: ClockSender | None = None

    def start(self) -> None:
        if self.wanted and self._sender is None and self._clock.name != "external":
            self._sender = ClockSender(self._send, self._clock, **self._timing)
            self._sender.start()

    def stop(self) -> None:
        if self._sender is not None:
            self._sender.stop()
            self._sender = None


class ClockControl:
    """The engine thread's side of the clock: a preset's tempo and meter applied (Link: to every peer), a Link
    session's start and stop taken as a DAW's Start and Stop, and the UI's chooser switching the source."""

    def __init__(self, clock: LiveClock, clock_out: ClockOut, engine: Any, presets: Any, recorder: Any,
                 log: Callable[[str, str], None], apply: Callable[[list[Command]], None]) -> None:
        self._clock, self._clock_out, self._engine, self._presets = clock, clock_out, engine, presets
        self._recorder, self._log, self._apply = recorder, log, apply

    def follow(self) -> None:
        """Every engine tick: a tempo or meter change the preset session has ready, and Link's transport."""
        change = self._presets.take_clock_change()
        if change is not None:
            self._clock.set_tempo_and_meter(change.bpm, change.beats_per_bar, change.beat_unit)
            if self._recorder is not None:
                self._recorder.settings_changed(self._ticks_now(), dataclasses.asdict(self._engine.settings),
                                                self._presets.extras, self._presets.preset)
        for transport in self._clock.take_transport():  # a start moved bar 1; the clock's epoch voided old plans
            self._log("info", f"Link session {'started' if isinstance(transport, ClockStart) else 'stopped'}")
            self._apply(self._engine.handle(transport, self._ticks_now()))

    def switch(self, name: str) -> list[Command]:
        """The UI's clock chooser: what plays stops (as on a DAW's Stop), then the new source leads; the internal
        clock goes on from where the old one was."""
        if name == self._clock.name:
            return []
        settings = self._engine.settings
        try:
            source = self._clock.internal_here(settings.beats_per_bar, settings.beat_unit) if name == "internal" \
                else make_clock(name, self._clock.bpm, settings.beats_per_bar, settings.beat_unit,
                                start_stop=self._presets.clock_options().start_stop)
        except (ClockError, ValueError) as err:
            return [Log("warning", f"clock not changed: {err}")]
        commands = self._engine.handle(ClockStop(), self._ticks_now())
        self._clock_out.stop()  # FC: a synth following us stops too, and starts again with the new source
        self._clock.switch(source)
        self._clock_out.start()
        return [*commands, Log("info", f"clock: {name}")]

    def _ticks_now(self) -> int:
        return self._clock.timebase().ticks_at(time.monotonic_ns())
