"""Clocks: the internal clock re-anchors, the MIDI clock follower locks to a jittery DAW, the sender keeps time."""

from __future__ import annotations

import random
import threading
import time

import pytest

from companion.core.events import (
    PPQ,
    TICKS_PER_CLOCK_PULSE,
    ClockContinue,
    ClockPulse,
    ClockStart,
    ClockStop,
    NoteOn,
    SongPosition,
)
from companion.midi.clock import ClockSender, InternalClock, MidiClockFollower

PULSE_NS_120 = 500_000_000 // 24  # 20.83 ms
BAR_PULSES = 96


class FakeNow:
    """A monotonic clock the test moves by hand."""

    def __init__(self, ns: int = 1_000_000_000) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


def jittery_pulses(count: int, start_ns: int, bpm: float = 120.0, jitter: float = 0.05,
                   seed: int = 1) -> list[int]:
    """Pulse times of a steady source with uniform jitter of +-`jitter` of a period on every pulse."""
    rng = random.Random(seed)
    period_ns = 60e9 / (bpm * 24)
    return [start_ns + round(i * period_ns + rng.uniform(-jitter, jitter) * period_ns) for i in range(count)]


# --- internal clock ----------------------------------------------------------------------------------


def test_internal_clock_counts_from_creation_and_keeps_position_across_tempo_changes() -> None:
    now = FakeNow()
    clock = InternalClock(120.0, beats_per_bar=3, now_ns=now)
    assert clock.running and clock.bpm == 120.0
    now.ns += 500_000_000
    assert clock.timebase().ticks_at(now.ns) == PPQ
    before = clock.timebase()
    clock.set_tempo(60.0)
    assert clock.timebase() is not before  # a new snapshot, the old one untouched
    assert before.bpm == 120.0 and clock.timebase().ticks_at(now.ns) == PPQ
    now.ns += 1_000_000_000
    assert clock.timebase().ticks_at(now.ns) == 2 * PPQ
    assert clock.timebase().bar_beat(3 * PPQ) == (2, 1, 0)


def test_internal_clock_start_jumps_and_bumps_the_epoch() -> None:
    now = FakeNow()
    clock = InternalClock(120.0, now_ns=now)
    now.ns += 3_000_000_000
    clock.stop()
    assert not clock.running
    clock.start()
    assert clock.running and clock.epoch == 1 and clock.timebase().ticks_at(now.ns) == 0


# --- follower ----------------------------------------------------------------------------------------


def feed_all(follower: MidiClockFollower, times: list[int]) -> None:
    for t in times:
        follower.feed(ClockPulse(), t)


def test_follower_locks_within_one_bar_to_a_jittery_120_bpm_source() -> None:
    start_ns = 10_000_000_000
    follower = MidiClockFollower(initial_bpm=90.0, now_ns=lambda: start_ns)
    follower.feed(ClockStart(), start_ns - 1_000_000)
    assert follower.running
    times = jittery_pulses(5 * BAR_PULSES, start_ns)
    feed_all(follower, times[:BAR_PULSES])
    assert abs(follower.bpm - 120.0) < 0.5, follower.bpm  # locked within one bar
    for k in range(BAR_PULSES, 5 * BAR_PULSES):
        follower.feed(ClockPulse(), times[k])
        assert abs(follower.bpm - 120.0) < 0.5, (k, follower.bpm)  # and stays locked
        # The position follows the pulse count: the ideal time of pulse k lands on tick k * 20 (+-1).
        ideal_ns = start_ns + round(k * PULSE_NS_120)
        assert abs(follower.timebase().ticks_at(ideal_ns) - k * TICKS_PER_CLOCK_PULSE) <= 1
    # Between pulses, the timebase runs on at the smoothed tempo: half way to the next beat is tick +240.
    beat_ns = start_ns + 5 * BAR_PULSES * PULSE_NS_120
    assert abs(follower.timebase().ticks_at(round(beat_ns + 250_000_000)) - (20 * PPQ + 240)) <= 2
    assert follower.locked


def test_follower_song_position_and_continue_resume_where_the_daw_says() -> None:
    follower = MidiClockFollower()
    follower.feed(ClockStart(), 0)
    feed_all(follower, jittery_pulses(48, 1_000_000, jitter=0.0))
    follower.feed(ClockStop(), 2_000_000_000)
    assert not follower.running
    follower.feed(SongPosition(16), 2_100_000_000)  # bar 2 (16 sixteenths)
    assert follower.timebase().ticks_at(2_100_000_000) == 4 * PPQ
    epoch = follower.epoch
    follower.feed(ClockContinue(), 3_000_000_000)
    follower.feed(ClockPulse(), 3_001_000_000)
    assert follower.running and follower.timebase().ticks_at(3_001_000_000) == 4 * PPQ
    follower.feed(ClockPulse(), 3_001_000_000 + PULSE_NS_120)
    assert follower.timebase().ticks_at(3_001_000_000 + PULSE_NS_120) == 4 * PPQ + TICKS_PER_CLOCK_PULSE
    assert follower.epoch == epoch  # continue is no jump; the song position was


def test_follower_continue_after_stop_resumes_after_the_last_pulse() -> None:
    follower = MidiClockFollower()
    follower.feed(ClockStart(), 0)
    times = jittery_pulses(30, 1_000_000, jitter=0.0)
    feed_all(follower, times)
    follower.feed(ClockStop(), times[-1] + 5_000_000)
    follower.feed(ClockContinue(), 5_000_000_000)
    follower.feed(ClockPulse(), 5_000_100_000)
    assert follower.timebase().ticks_at(5_000_100_000) == 30 * TICKS_PER_CLOCK_PULSE


def test_follower_start_puts_tick_zero_on_the_next_pulse_and_is_a_jump() -> None:
    follower = MidiClockFollower()
    follower.feed(ClockStart(), 0)
    feed_all(follower, jittery_pulses(100, 1_000_000, jitter=0.0))
    follower.feed(ClockStop(), 3_000_000_000)
    follower.feed(ClockStart(), 4_000_000_000)
    assert follower.epoch == 2
    follower.feed(ClockPulse(), 4_000_500_000)
    assert follower.timebase().ticks_at(4_000_500_000) == 0


def test_follower_fills_in_a_lost_pulse_and_keeps_the_position() -> None:
    start_ns = 1_000_000_000
    follower = MidiClockFollower()
    follower.feed(ClockStart(), start_ns - 1_000)
    times = jittery_pulses(3 * BAR_PULSES, start_ns, seed=7)
    dropped = times[:150] + times[151:]  # an xrun ate pulse 150
    feed_all(follower, dropped)
    assert follower.filled_pulses == 1
    last_ideal_ns = start_ns + round((3 * BAR_PULSES - 1) * PULSE_NS_120)
    assert abs(follower.timebase().ticks_at(last_ideal_ns) - (3 * BAR_PULSES - 1) * TICKS_PER_CLOCK_PULSE) <= 1
    assert abs(follower.bpm - 120.0) < 0.5


def test_follower_counts_a_stalled_senders_late_burst_once() -> None:
    """A DAW (or a cable) that stalls sends the pulses it owes at once: they are late, not lost."""
    start_ns = 1_000_000_000
    follower = MidiClockFollower()
    follower.feed(ClockStart(), start_ns - 1_000)
    times = jittery_pulses(3 * BAR_PULSES, start_ns, jitter=0.0)
    stalled = times[:150] + [times[152]] * 3 + times[153:]  # pulses 150, 151 and 152 arrive together
    feed_all(follower, stalled)
    assert follower.filled_pulses == 2 and follower.late_pulses == 2
    last_ideal_ns = start_ns + round((3 * BAR_PULSES - 1) * PULSE_NS_120)
    assert abs(follower.timebase().ticks_at(last_ideal_ns) - (3 * BAR_PULSES - 1) * TICKS_PER_CLOCK_PULSE) <= 1


def test_follower_follows_a_tempo_change() -> None:
    follower = MidiClockFollower()
    follower.feed(ClockStart(), 0)
    first = jittery_pulses(2 * BAR_PULSES, 1_000_000, bpm=120.0, seed=3)
    second = jittery_pulses(2 * BAR_PULSES, first[-1] + round(60e9 / (140 * 24)), bpm=140.0, seed=4)
    feed_all(follower, first + second)
    assert abs(follower.bpm - 140.0) < 0.5


def test_follower_while_stopped_tracks_tempo_but_not_position_and_ignores_other_messages() -> None:
    follower = MidiClockFollower(initial_bpm=100.0, now_ns=lambda: 0)
    follower.feed(NoteOn(0, 60, 1), 0)
    feed_all(follower, jittery_pulses(BAR_PULSES, 1_000_000))
    assert not follower.running and abs(follower.bpm - 120.0) < 0.5
    assert follower.epoch == 0


# --- sender ------------------------------------------------------------------------------------------


def test_sender_starts_with_fa_at_zero_and_sends_a_pulse_every_20_ticks() -> None:
    now = FakeNow(0)
    clock = InternalClock(120.0, now_ns=now)
    sender = ClockSender(lambda data: None, clock, now_ns=now)
    assert sender.begin() == [[0xFA]]
    assert sender.due(0) == [[0xF8]]
    assert sender.due(PULSE_NS_120 - 1) == []
    assert sender.next_deadline_ns() == round(PULSE_NS_120 + 0.5)  # ceil of 20.83 ms
    assert sender.due(500_000_000) == [[0xF8]] * 24  # a beat later: 24 pulses in all
    now.ns = 500_000_000
    clock.set_tempo(60.0)  # from here, pulses come at half the rate
    assert sender.due(500_000_000 + 2 * PULSE_NS_120 + 1) == [[0xF8]]


def test_sender_mid_song_sends_song_position_and_continue_from_the_next_16th() -> None:
    now = FakeNow(0)
    clock = InternalClock(120.0, now_ns=now)
    sender = ClockSender(lambda data: None, clock, now_ns=now)
    now.ns = 1_010_000_000  # tick 969: the next 16th is tick 1080 = 16th number 9
    assert sender.begin() == [[0xF2, 9, 0], [0xFB]]
    assert sender.song_position(200 * 120) == [0xF2, 200 - 128, 1]


def test_sender_thread_sends_pulses_on_the_grid_and_fc_on_stop() -> None:
    clock = InternalClock(300.0)  # a pulse every 8.3 ms
    sent: list[tuple[list[int], int]] = []
    lock = threading.Lock()

    def record(data: list[int]) -> None:
        with lock:
            sent.append((data, time.monotonic_ns()))

    sender = ClockSender(record, clock)
    sender.start()
    deadline = time.monotonic() + 5
    while sender.pulses_sent < 12 and time.monotonic() < deadline:
        time.sleep(0.005)
    sender.stop()
    sender.stop()
    with lock:
        messages = [d for d, _ in sent]
        pulse_times = [t for d, t in sent if d == [0xF8]]
    if messages[0] == [0xFA]:
        first_ticks = 0
    else:
        assert messages[0][0] == 0xF2 and messages[1] == [0xFB]
        first_ticks = ((messages[0][2] << 7) | messages[0][1]) * 120
    assert messages[-1] == [0xFC] and messages.count([0xFC]) == 1
    assert len(pulse_times) >= 12
    timebase = clock.timebase()
    for i, sent_ns in enumerate(pulse_times):  # pulse i goes out at (never before) tick first + 20 i
        assert sent_ns >= timebase.ns_at(first_ticks + i * TICKS_PER_CLOCK_PULSE)


def test_a_timed_sender_hands_each_pulse_over_ahead_with_its_exact_time() -> None:
    """--timed-output: each pulse goes to the timed port ahead, stamped with its own time (written at its frame
    there); Stop goes at once (the port voids the pulses still pending: test_jack_timed)."""
    clock = InternalClock(300.0)
    now: list[tuple[str, list[int], int, int]] = []  # (how, data, due, handed at)
    lock = threading.Lock()

    def record(how: str) -> object:
        def sink(data: list[int], due_ns: int = 0) -> None:
            with lock:
                now.append((how, data, due_ns, time.monotonic_ns()))
        return sink

    ahead = 25_000_000
    timed = [True]
    sender = ClockSender(record("now"), clock, send_at=record("at"), hand_ahead_ns=ahead, timed=lambda: timed[0])
    sender.start()
    deadline = time.monotonic() + 5
    while sender.pulses_sent < 12 and time.monotonic() < deadline:
        time.sleep(0.005)
    sender.stop()
    with lock:
        pulses = [(due, at) for how, data, due, at in now if data == [0xF8]]
        assert all(how == "at" for how, data, _, _ in now if data == [0xF8])
        stop = [(how, due) for how, data, due, _ in now if data == [0xFC]]
    timebase = clock.timebase()
    first_ticks = timebase.ticks_at(pulses[0][0])
    assert [due for due, _ in pulses] == [timebase.ns_at(first_ticks + i * TICKS_PER_CLOCK_PULSE)
                                          for i in range(len(pulses))]  # exact times, no drift, none skipped
    assert stop == [("now", 0)]


def test_a_timed_sender_hands_nothing_over_past_a_coming_start() -> None:
    """A start or stop the clock knows is coming (a Link session's, at its bar line) ends the timeline: pulses due
    from a millisecond before it are not handed over before it comes (they may belong to the new timeline)."""

    class Announced(InternalClock):
        def __init__(self) -> None:
            super().__init__(300.0)
            self.coming = time.monotonic_ns() + 120_000_000

        def next_transport_ns(self) -> int | None:
            return self.coming if time.monotonic_ns() < self.coming else None

    clock = Announced()
    handed: list[tuple[int, int]] = []  # (due, handed at)
    sender = ClockSender(lambda d: None, clock, send_at=lambda d, t: handed.append((t, time.monotonic_ns())),
                         hand_ahead_ns=50_000_000, timed=lambda: True)
    sender.start()
    deadline = time.monotonic() + 5
    while sender.pulses_sent < 40 and time.monotonic() < deadline:
        time.sleep(0.005)
    sender.stop()
    late = [(due, at) for due, at in handed if due >= clock.coming - 1_000_000]
    assert late and [d for d, _ in handed if d < clock.coming - 1_000_000]  # pulses on both sides of it
    assert all(at >= clock.coming for _, at in late)


def test_an_untimed_port_gets_pulses_when_due_even_with_a_timed_sender() -> None:
    clock = InternalClock(300.0)
    sent: list[list[int]] = []
    handed: list[list[int]] = []
    sender = ClockSender(sent.append, clock, send_at=lambda d, t: handed.append(d), hand_ahead_ns=25_000_000,
                         timed=lambda: False)  # the JACK client is not ours (rtmidi's): no frames to write at
    sender.start()
    deadline = time.monotonic() + 5
    while sender.pulses_sent < 6 and time.monotonic() < deadline:
        time.sleep(0.005)
    sender.stop()
    assert handed == [] and sent.count([0xF8]) >= 6


@pytest.mark.parametrize("sixteenths", [0, 1, 127, 128, 16383])
def test_sender_song_position_bytes_round_trip_through_the_follower(sixteenths: int) -> None:
    sender = ClockSender(lambda data: None, InternalClock(120.0))
    data = sender.song_position(sixteenths * 120)
    follower = MidiClockFollower(now_ns=lambda: 0)
    follower.feed(SongPosition((data[2] << 7) | data[1]), 5)
    assert follower.timebase().ticks_at(5) == sixteenths * 120
