"""Clock sources (internal, MIDI Beat Clock follower) behind one small interface, and a MIDI clock sender."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from companion.core.events import (
    TICKS_PER_16TH,
    TICKS_PER_CLOCK_PULSE,
    ClockContinue,
    ClockPulse,
    ClockStart,
    ClockStop,
    Message,
    SongPosition,
)
from companion.core.timebase import MAX_BPM, MIN_BPM, TempoEstimator, Timebase
from companion.midi.realtime import SCHEDULER_PRIORITY, try_realtime

NowNs = Callable[[], int]
SPIN_NS = 1_000_000  # wait on the condition until this close to a deadline, then spin
MAX_FILLED_PULSES = 3  # a gap of up to this many missing pulses is filled in, a longer one is a pause
MAX_SENDER_WAIT_NS = 20_000_000  # the sender re-reads its clock at least this often (tempo, transport)
STOPPED_POLL_NS = 2_000_000  # a sender whose clock is stopped looks for its start this often


class ClockSource(Protocol):
    """What the scheduler, engine and UI read from a clock; every reader gets an immutable snapshot."""

    def timebase(self) -> Timebase: ...

    @property
    def running(self) -> bool: ...

    @property
    def bpm(self) -> float: ...

    @property
    def epoch(self) -> int:
        """Bumped whenever the position jumps (start, song position): plans made on the old grid are void."""
        ...

    def next_transport_ns(self) -> int | None:
        """When a start or stop already known to be coming takes effect (a Link session's), else None."""
        ...


class _ClockReading:
    """What every clock source gives readers: an immutable timebase snapshot, running, tempo."""

    _timebase: Timebase
    _running: bool

    def timebase(self) -> Timebase:
        return self._timebase

    @property
    def running(self) -> bool:
        return self._running

    @property
    def bpm(self) -> float:
        return self._timebase.bpm

    def next_transport_ns(self) -> int | None:
        return None  # a start or stop comes unannounced (the player's, the DAW's)


class InternalClock(_ClockReading):
    """A free-running clock: tick 0 is when it was made (or last started); tempo changes re-anchor it."""

    def __init__(self, bpm: float = 120.0, beats_per_bar: int = 4, beat_unit: int = 4,
                 now_ns: NowNs = time.monotonic_ns) -> None:
        self._now_ns = now_ns
        self._lock = threading.Lock()  # writers only; readers take the current reference
        self._timebase = Timebase(bpm, now_ns(), 0, beats_per_bar, beat_unit)
        self._running = True
        self.epoch = 0


    def set_tempo(self, bpm: float) -> None:
        """Change tempo from now on; the current position is kept (re-anchored, not accumulated)."""
        with self._lock:
            self._timebase = self._timebase.with_tempo(bpm, self._now_ns())

    def set_meter(self, beats_per_bar: int, beat_unit: int = 4) -> None:
        with self._lock:
            self._timebase = self._timebase.with_meter(beats_per_bar, beat_unit)

    def start(self, at_ticks: int = 0) -> None:
        """(Re)start with `at_ticks` now (a jump: the epoch changes)."""
        with self._lock:
            self._timebase = self._timebase.with_position(at_ticks, self._now_ns())
            self._running = True
            self.epoch += 1

    def stop(self) -> None:
        """Mark the transport stopped; time keeps running so a player can still be answered."""
        self._running = False


class MidiClockFollower(_ClockReading):
    """Follows the DAW's MIDI Beat Clock: tempo from the smoothed pulse times, position from the pulse count.

    Start puts tick 0 on the next pulse, Song Position sets the tick of the next pulse (16ths x 120),
    Continue resumes there; every pulse is 20 ticks. After each pulse the timebase is re-anchored on the
    estimator's jitter-free grid, so `ticks_at(now)` tracks the DAW's beats between pulses. While stopped
    (or before any clock), time runs on at the last tempo so the engine keeps working.
    One thread (the engine's) feeds it; any thread may read `timebase()`.
    """

    def __init__(self, beats_per_bar: int = 4, beat_unit: int = 4, initial_bpm: float = 120.0,
                 estimator: TempoEstimator | None = None, now_ns: NowNs = time.monotonic_ns) -> None:
        self._estimator = estimator or TempoEstimator()
        self._beats_per_bar, self._beat_unit = beats_per_bar, beat_unit
        self._timebase = Timebase(initial_bpm, now_ns(), 0, beats_per_bar, beat_unit)
        self._running = False
        self._next_pulse_ticks: int | None = None  # from Start/Continue/Song Position, for the next pulse
        self._last_pulse_ns: int | None = None
        self._last_pulse_ticks = -TICKS_PER_CLOCK_PULSE
        self._filled_last_gap = False
        self._owed = 0  # pulses the last fill counted that may still arrive, late, in a burst
        self.epoch = 0
        self.filled_pulses = 0  # pulses taken as lost on the way (xruns, a busy USB cable) and filled in
        self.late_pulses = 0  # filled pulses that turned up after all (the sender stalled): not counted twice


    @property
    def locked(self) -> bool:
        """True once a full beat of pulses is in the tempo fit."""
        return self._estimator.locked

    def feed(self, message: Message, time_ns: int) -> None:
        """Take one clock message stamped on arrival; other messages are ignored."""
        if isinstance(message, ClockPulse):
            self._pulse(time_ns)
        elif isinstance(message, ClockStart):
            self._running = True
            self._jump(0, time_ns)
        elif isinstance(message, ClockContinue):
            self._running = True
            if self._next_pulse_ticks is None:
                self._next_pulse_ticks = self._last_pulse_ticks + TICKS_PER_CLOCK_PULSE
        elif isinstance(message, ClockStop):
            self._running = False
            # The song position is where the next pulse would have been; Continue resumes there.
            self._next_pulse_ticks = self._last_pulse_ticks + TICKS_PER_CLOCK_PULSE
        elif isinstance(message, SongPosition):
            self._jump(message.sixteenths * TICKS_PER_16TH, time_ns)

    def _jump(self, ticks: int, time_ns: int) -> None:
        """The next pulse is at `ticks`; until it comes, that tick is now (the DAW sends it right away)."""
        self._next_pulse_ticks = ticks
        self._owed = 0
        self._last_pulse_ticks = ticks - TICKS_PER_CLOCK_PULSE
        self._timebase = self._timebase.with_position(ticks, time_ns)
        self.epoch += 1

    def _pulse(self, time_ns: int) -> None:
        estimator = self._estimator
        if self._next_pulse_ticks is not None:
            estimator.set_next_pulse_ticks(self._next_pulse_ticks)
            self._next_pulse_ticks = None
            self._last_pulse_ns = None  # no gap filling across a jump
        elif self._running:
            if self._counted_already(time_ns):
                return
            self._fill_gap(time_ns)
        estimator.feed(time_ns)
        self._last_pulse_ns = time_ns
        self._last_pulse_ticks = estimator.pulse_ticks(estimator.pulse_count - 1)
        fitted = estimator.timebase(self._beats_per_bar, self._beat_unit)
        if not self._running:
            # Stopped but the DAW keeps sending clock: follow its tempo, keep our position running.
            if fitted is not None:
                self._timebase = self._timebase.with_tempo(fitted.bpm, time_ns)
        elif fitted is not None:
            self._timebase = fitted
        else:
            # Not locked yet: the pulse count is the position, at the tempo we had.
            self._timebase = self._timebase.with_position(self._last_pulse_ticks, time_ns)

    def _period_ns(self) -> float | None:
        """The pulse period at the fitted tempo (None before the first fit)."""
        bpm = self._estimator.bpm
        return None if bpm is None else 60e9 / (bpm * 24)

    def _counted_already(self, time_ns: int) -> bool:
        """A pulse in a burst right after a fill is one of the filled pulses arriving late (a sender that
        stalled sends what it owes at once): it was counted when the gap was filled, so it is not counted again."""
        owed, self._owed = self._owed, 0
        period_ns = self._period_ns()
        if owed <= 0 or period_ns is None or self._last_pulse_ns is None:
            return False
        if time_ns - self._last_pulse_ns >= 0.5 * period_ns:
            return False  # on time: the filled pulses really were lost
        self._owed = owed - 1
        self.late_pulses += 1
        return True

    def _fill_gap(self, time_ns: int) -> None:
        """A gap of 2..4 periods while locked is pulses lost on the way: count them so position stays right.

        Two such gaps in a row are a real tempo drop instead; the estimator's re-lock handles that.
        """
        period_ns = self._period_ns()
        if period_ns is None or self._last_pulse_ns is None:
            return
        gap = (time_ns - self._last_pulse_ns) / period_ns
        missing = round(gap) - 1
        if 1 <= missing <= MAX_FILLED_PULSES and abs(gap - round(gap)) < 0.3 and not self._filled_last_gap:
            last_index = self._estimator.pulse_count - 1
            for k in range(1, missing + 1):
                fitted_ns = self._estimator.fitted_pulse_ns(last_index + k)
                self._estimator.feed(fitted_ns if fitted_ns is not None else time_ns)
            self.filled_pulses += missing
            self._owed = missing
            self._filled_last_gap = True
        else:
            self._filled_last_gap = False


class ClockSender:
    """Sends MIDI Beat Clock as master: F8 at absolute deadlines from a clock, FA/FB, FC, Song Position.

    Pulse k is due at `clock.timebase().ns_at(k * 20)`, re-read before every wait, so tempo changes apply at
    once and nothing drifts. The thread follows the clock's transport: FC when it stops, FA (or Song Position
    and FB) when it starts or its position jumps (a Link session's start). `start()` runs its own thread;
    `due(now_ns)` is the pure step it repeats.
    """

    def __init__(self, send: Callable[[list[int]], None], clock: ClockSource,
                 now_ns: NowNs = time.monotonic_ns, realtime_priority: int | None = SCHEDULER_PRIORITY, *,
                 send_at: Callable[[list[int], int], None] | None = None, hand_ahead_ns: int = 0,
                 timed: Callable[[], bool] = lambda: False) -> None:
        self._send = send
        # A timed output (our JACK client) takes each pulse `hand_ahead_ns` before its time, with that time, and
        # writes it at its frame: the pulses' spacing no longer depends on when this thread wakes. Start, Stop,
        # Continue and Song Position go at once, and void the pulses still pending there (`_jackout.h`).
        self._send_at = send_at if hand_ahead_ns > 0 else None
        self._hand_ahead_ns = hand_ahead_ns
        self._timed = timed
        self._realtime_priority = realtime_priority
        self.realtime_problem: str | None = None  # why the thread runs without real-time priority, if it does
        self._clock = clock
        self._now_ns = now_ns
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._next_pulse_ticks: int | None = None
        self._epoch = 0
        self.pulses_sent = 0

    def begin(self, now_ns: int | None = None) -> list[list[int]]:
        """Where the clock is now, the messages that start followers: FA at tick 0, else Song Position + FB.

        Pulses then run from the next 16th (Song Position has 16th resolution); within the first pulse of tick 0
        (a start read a moment late) it is FA, and the first pulse goes out at once.
        """
        now_ns = self._now_ns() if now_ns is None else now_ns
        self._epoch = self._clock.epoch
        ticks = max(0, self._clock.timebase().ticks_at(now_ns))
        next_16th = 0 if ticks < TICKS_PER_CLOCK_PULSE else -(-ticks // TICKS_PER_16TH) * TICKS_PER_16TH
        self._next_pulse_ticks = next_16th
        if next_16th == 0:
            return [[0xFA]]
        sixteenths = min(next_16th // TICKS_PER_16TH, 16383)
        return [[0xF2, sixteenths & 0x7F, sixteenths >> 7], [0xFB]]

    def transport(self, now_ns: int) -> list[list[int]]:
        """FC when the clock has stopped since the last call; the messages of `begin` when it has started or
        its position jumped; else nothing."""
        clock = self._clock
        if not clock.running:
            if self._next_pulse_ticks is None:
                return []
            self._next_pulse_ticks = None
            return [[0xFC]]
        if self._next_pulse_ticks is None or clock.epoch != self._epoch:
            return self.begin(now_ns)
        return []

    def due(self, now_ns: int) -> list[list[int]]:
        """The F8 pulses whose deadline has passed (normally one), advancing the pulse counter."""
        return [data for data, _ in self.due_at(now_ns)]

    def due_at(self, until_ns: int) -> list[tuple[list[int], int]]:
        """The F8 pulses due by `until_ns`, each with its deadline, advancing the pulse counter."""
        if self._next_pulse_ticks is None:
            return []
        timebase = self._clock.timebase()
        out: list[tuple[list[int], int]] = []
        while (deadline := timebase.ns_at(self._next_pulse_ticks)) <= until_ns:
            out.append(([0xF8], deadline))
            self._next_pulse_ticks += TICKS_PER_CLOCK_PULSE
        return out

    def next_deadline_ns(self) -> int | None:
        if self._next_pulse_ticks is None:
            return None
        return self._clock.timebase().ns_at(self._next_pulse_ticks)

    def song_position(self, ticks: int) -> list[int]:
        """Bytes of a Song Position Pointer for `ticks` (floored to the 16th), for the caller to send."""
        sixteenths = max(0, min(ticks // TICKS_PER_16TH, 16383))
        return [0xF2, sixteenths & 0x7F, sixteenths >> 7]

    def send_position(self, ticks: int) -> None:
        """Send Song Position now (followers relocate; do it while stopped)."""
        self._send(self.song_position(ticks))

    # --- the sending thread ------------------------------------------------------------------------

    def start(self) -> None:
        """Send FA (or Song Position + FB) now, then pulses on the grid from a thread of our own."""
        if self._thread is not None:
            return
        for data in self.transport(self._now_ns()):
            self._send(data)
        self._thread = threading.Thread(target=self._run, name="companion-clock-out", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop pulsing and send FC (followers stop); idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        self._thread = None
        self._send([0xFC])

    close = stop

    def _run(self) -> None:
        self.realtime_problem = try_realtime(self._realtime_priority)
        while True:
            for data in self.transport(self._now_ns()):
                self._send(data)
            ahead = self._hand_ahead_ns if self._send_at is not None and self._timed() else 0
            # pulses are handed over only up to a millisecond before a start or stop that is coming: a pulse at it
            # is the new timeline's (Link's start maps to our clock within that)
            coming = self._clock.next_transport_ns() if ahead else None
            deadline_ns = self.next_deadline_ns()
            with self._cond:
                if deadline_ns is None:  # the clock is stopped: look for its start again soon
                    if not self._closing:
                        self._cond.wait(STOPPED_POLL_NS / 1e9)
                    if self._closing:
                        return
                    continue
                while not self._closing:
                    wake_ns = deadline_ns - ahead if coming is None else min(deadline_ns - ahead, coming)
                    wait_ns = wake_ns - (0 if ahead else SPIN_NS) - self._now_ns()
                    if wait_ns <= 0 or self._moved():
                        break
                    self._cond.wait(min(wait_ns, MAX_SENDER_WAIT_NS) / 1e9)
                    deadline_ns = self.next_deadline_ns() or deadline_ns  # tempo may have changed
                if self._closing:
                    return
            if self._moved():
                continue  # stopped, started again or jumped: the loop's top sends what that takes
            if ahead and self._send_at is not None:  # handed over now, written at its frame
                until_ns = self._now_ns() + ahead
                for data, due_ns in self.due_at(until_ns if coming is None else min(until_ns, coming - SPIN_NS)):
                    self._send_at(data, due_ns)
                    self.pulses_sent += 1
                continue
            while self._now_ns() < deadline_ns:
                time.sleep(0)  # spin, but let rtmidi/JACK threads take the GIL
            for data in self.due(self._now_ns()):
                self._send(data)
                self.pulses_sent += 1

    def _moved(self) -> bool:
        """The clock stopped or its position jumped since the pulses were planned."""
        return not self._clock.running or self._clock.epoch != self._epoch


def clamp_bpm(bpm: float) -> float:
    """Keep a tempo inside what a Timebase accepts (for --bpm and tempo CCs)."""
    return min(max(bpm, MIN_BPM), MAX_BPM)
