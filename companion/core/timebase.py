"""Musical time: a tempo map from wall-clock ns to integer ticks, and a MIDI-clock tempo estimator."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from companion.core.events import CLOCK_PULSES_PER_QUARTER, PPQ, TICKS_PER_CLOCK_PULSE

MIN_BPM = 1.0
MAX_BPM = 1000.0
_NS_PER_MINUTE = 60_000_000_000


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


@dataclass(frozen=True, slots=True)
class Timebase:
    """An immutable tempo segment: `origin_ticks` happens at `origin_ns`, then time runs at `bpm`.

    `bpm` counts quarter notes per minute (as MIDI clock does), whatever the meter. All conversions are
    integer arithmetic on `quarter_ns` (the tempo rounded to whole nanoseconds per quarter), so converting
    back and forth never drifts: `ticks_at(ns_at(t)) == t` for every tick. The bar grid starts at tick 0
    (bar 1, beat 1); a tempo change re-anchors the segment, never accumulates floats.
    """

    bpm: float
    origin_ns: int
    origin_ticks: int = 0
    beats_per_bar: int = 4
    beat_unit: int = 4
    quarter_ns: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (MIN_BPM <= self.bpm <= MAX_BPM):
            raise ValueError(f"tempo must be between {MIN_BPM:g} and {MAX_BPM:g} BPM, got {self.bpm!r}")
        if self.beats_per_bar < 1:
            raise ValueError(f"beats_per_bar must be at least 1, got {self.beats_per_bar!r}")
        if self.beat_unit not in (1, 2, 4, 8, 16):
            raise ValueError(f"beat_unit must be 1, 2, 4, 8 or 16, got {self.beat_unit!r}")
        object.__setattr__(self, "quarter_ns", round(_NS_PER_MINUTE / self.bpm))

    # --- conversions -------------------------------------------------------------------------------

    def ticks_at(self, ns: int) -> int:
        """The tick that is current at `ns` (floor: a tick starts at its own `ns_at`)."""
        return self.origin_ticks + ((ns - self.origin_ns) * PPQ) // self.quarter_ns

    def ns_at(self, ticks: int) -> int:
        """The first nanosecond of `ticks` (ceil, so that `ticks_at(ns_at(t)) == t`)."""
        return self.origin_ns + _ceil_div((ticks - self.origin_ticks) * self.quarter_ns, PPQ)

    @property
    def tick_ns(self) -> float:
        """Duration of one tick in ns (for display and sleeping; never accumulate it)."""
        return self.quarter_ns / PPQ

    # --- re-anchoring ------------------------------------------------------------------------------

    def with_tempo(self, bpm: float, at_ns: int) -> Timebase:
        """The same position, from `at_ns` on, at a new tempo.

        The new origin is the start of the tick current at `at_ns`, so both segments agree there to the
        nanosecond (the tick's start is rounded up to a whole ns: at most 1 ns per real tempo change; an
        unchanged tempo returns the same segment, so re-anchoring on every clock pulse cannot drift).
        """
        if round(_NS_PER_MINUTE / bpm) == self.quarter_ns:
            return self
        anchor_ticks = self.ticks_at(at_ns)
        return Timebase(bpm, self.ns_at(anchor_ticks), anchor_ticks, self.beats_per_bar, self.beat_unit)

    def with_position(self, ticks: int, at_ns: int) -> Timebase:
        """Jump: `ticks` happens at `at_ns` (transport Start, Song Position Pointer, locate)."""
        return Timebase(self.bpm, at_ns, ticks, self.beats_per_bar, self.beat_unit)

    def with_meter(self, beats_per_bar: int, beat_unit: int = 4) -> Timebase:
        """The same tempo map with another meter; the bar grid still counts from tick 0."""
        return Timebase(self.bpm, self.origin_ns, self.origin_ticks, beats_per_bar, beat_unit)

    # --- the grid ----------------------------------------------------------------------------------

    @property
    def beat_ticks(self) -> int:
        """Ticks per beat: a quarter in x/4, an eighth in x/8."""
        return PPQ * 4 // self.beat_unit

    @property
    def bar_ticks(self) -> int:
        return self.beat_ticks * self.beats_per_bar

    def next_beat(self, ticks: int) -> int:
        """The first beat line at or after `ticks` (a tick exactly on a beat is its own next beat)."""
        return _ceil_div(ticks, self.beat_ticks) * self.beat_ticks

    def next_bar(self, ticks: int) -> int:
        """The first bar line at or after `ticks` (a tick exactly on a bar line is its own next bar)."""
        return _ceil_div(ticks, self.bar_ticks) * self.bar_ticks

    def bar_beat(self, ticks: int) -> tuple[int, int, int]:
        """(bar, beat, tick_in_beat) with bar and beat counted from 1; ticks before 0 give bar 0 and below."""
        bar_index, in_bar = divmod(ticks, self.bar_ticks)
        beat_index, tick_in_beat = divmod(in_bar, self.beat_ticks)
        return bar_index + 1, beat_index + 1, tick_in_beat


class TempoEstimator:
    """Smooths MIDI clock pulse times (24 per quarter) into a tempo and a phase, with no clock of its own.

    Method: a least-squares line of pulse time against pulse index over a sliding window (default 72
    pulses, three beats), so the pulse period is the slope and the phase is the intercept. A pulse that
    lands far from the line (more than `outlier_fraction` of a period) is kept out of the fit; if
    `relock_pulses` such pulses in a row err on the same side, the tempo really changed and the window
    restarts from them, which re-locks within a beat or two instead of a whole window.
    """

    def __init__(
        self,
        window_pulses: int = 72,
        min_pulses: int = 12,
        outlier_fraction: float = 0.25,
        relock_pulses: int = 3,
        max_gap_ns: int = 1_000_000_000,
    ) -> None:
        if window_pulses < 4 or min_pulses < 2 or min_pulses > window_pulses:
            raise ValueError("need window_pulses >= 4 and 2 <= min_pulses <= window_pulses")
        self.window_pulses = window_pulses
        self.min_pulses = min_pulses
        self.outlier_fraction = outlier_fraction
        self.relock_pulses = relock_pulses
        self.max_gap_ns = max_gap_ns
        self._window: deque[tuple[int, int]] = deque(maxlen=window_pulses)  # (pulse index, time ns)
        self._suspects: list[tuple[int, int, int]] = []  # (pulse index, time ns, sign of the error)
        self._next_index = 0
        self._last_ns: int | None = None
        self._ticks_offset = 0  # tick of pulse index i is _ticks_offset + i * TICKS_PER_CLOCK_PULSE
        self._fit: tuple[float, float, int] | None = None  # (period ns, time of pulse 0 relative to t0, t0)
        self._was_locked = False  # after a re-lock, report from 3 pulses on rather than go silent
        self.relocks = 0
        self.outliers = 0

    def reset(self, next_pulse_ticks: int = 0) -> None:
        """Forget every pulse (Start after a pause, a new source); the next pulse is at this tick."""
        self._window.clear()
        self._suspects.clear()
        self._next_index = 0
        self._last_ns = None
        self._fit = None
        self._was_locked = False
        self._ticks_offset = next_pulse_ticks

    def set_next_pulse_ticks(self, ticks: int) -> None:
        """Song Position / Start: the next pulse fed is at `ticks`; the tempo fit is kept."""
        self._ticks_offset = ticks - self._next_index * TICKS_PER_CLOCK_PULSE

    # --- feeding -----------------------------------------------------------------------------------

    def feed(self, pulse_time_ns: int) -> float | None:
        """Add one F8 pulse; returns the smoothed BPM once `min_pulses` are in the fit, else None."""
        if self._last_ns is not None and pulse_time_ns - self._last_ns > self.max_gap_ns:
            # The clock paused (transport stopped without FC, cable pulled): start over, keep position.
            next_ticks = self.pulse_ticks(self._next_index)
            self.reset(next_ticks)
        index = self._next_index
        self._next_index += 1
        self._last_ns = pulse_time_ns
        if self._fit is not None and len(self._window) >= 3:
            period_ns, intercept, t0 = self._fit
            error_ns = pulse_time_ns - (t0 + intercept + period_ns * index)
            if abs(error_ns) > self.outlier_fraction * period_ns:
                sign = 1 if error_ns > 0 else -1
                if self._suspects and self._suspects[-1][2] != sign:
                    self._suspects.clear()
                self._suspects.append((index, pulse_time_ns, sign))
                if len(self._suspects) < self.relock_pulses:
                    self.outliers += 1
                    return self.bpm
                # A run of pulses all early or all late: a tempo change, not jitter.
                self.relocks += 1
                self.outliers -= self.relock_pulses - 1
                self._window.clear()
                self._window.extend((i, t) for i, t, _ in self._suspects)
                self._suspects.clear()
                self._refit()
                return self.bpm
        self._suspects.clear()
        self._window.append((index, pulse_time_ns))
        self._refit()
        return self.bpm

    def _refit(self) -> None:
        n = len(self._window)
        if n < 2:
            self._fit = None
            return
        t0 = self._window[0][1]
        mean_i = sum(i for i, _ in self._window) / n
        mean_t = sum(t - t0 for _, t in self._window) / n
        sxx = sum((i - mean_i) ** 2 for i, _ in self._window)
        sxy = sum((i - mean_i) * (t - t0 - mean_t) for i, t in self._window)
        period_ns = sxy / sxx
        if period_ns <= 0:
            self._fit = None
            return
        self._fit = (period_ns, mean_t - period_ns * mean_i, t0)
        if n >= self.min_pulses:
            self._was_locked = True

    # --- reading -----------------------------------------------------------------------------------

    @property
    def bpm(self) -> float | None:
        """The smoothed tempo, or None before `min_pulses` pulses are in the fit."""
        if self._fit is None:
            return None
        if len(self._window) < self.min_pulses and not (self._was_locked and len(self._window) >= 3):
            return None
        return _NS_PER_MINUTE / (self._fit[0] * CLOCK_PULSES_PER_QUARTER)

    @property
    def locked(self) -> bool:
        """True when the fit holds at least one beat of pulses."""
        return self._fit is not None and len(self._window) >= CLOCK_PULSES_PER_QUARTER

    @property
    def pulse_count(self) -> int:
        """Pulses fed since the last reset."""
        return self._next_index

    def pulse_ticks(self, index: int) -> int:
        """The tick of pulse number `index` (0 = the first pulse after the last reset)."""
        return self._ticks_offset + index * TICKS_PER_CLOCK_PULSE

    def fitted_pulse_ns(self, index: int) -> int | None:
        """When pulse `index` happens (or happened) according to the fit: the jitter-free grid."""
        if self._fit is None:
            return None
        period_ns, intercept, t0 = self._fit
        return t0 + round(intercept + period_ns * index)

    def position_ticks_at(self, ns: int) -> int | None:
        """The DAW's position in ticks at `ns`, from the fitted line (None before two pulses)."""
        if self._fit is None:
            return None
        period_ns, intercept, t0 = self._fit
        pulses = (ns - t0 - intercept) / period_ns
        return self._ticks_offset + math.floor(pulses * TICKS_PER_CLOCK_PULSE)

    def timebase(self, beats_per_bar: int = 4, beat_unit: int = 4) -> Timebase | None:
        """A Timebase anchored on the fitted time of the latest pulse, at the smoothed tempo."""
        bpm = self.bpm
        if bpm is None or self._next_index == 0:
            return None
        last = self._next_index - 1
        origin_ns = self.fitted_pulse_ns(last)
        assert origin_ns is not None  # bpm is not None implies a fit
        bpm = min(max(bpm, MIN_BPM), MAX_BPM)
        return Timebase(bpm, origin_ns, self.pulse_ticks(last), beats_per_bar, beat_unit)
