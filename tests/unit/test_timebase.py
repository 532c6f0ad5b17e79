"""Timebase conversions and grid, and the MIDI-clock tempo estimator under jitter and tempo changes."""

from __future__ import annotations

import random

import pytest

from companion.core.events import PPQ
from companion.core.timebase import TempoEstimator, Timebase

PULSES_PER_BAR = 96


def pulse_times(
    bpm: float,
    count: int,
    rng: random.Random,
    jitter: float = 0.05,
    start_ns: int = 10**9,
    first_index: int = 0,
    gaussian: bool = False,
) -> list[int]:
    """Pulse times of a 24 ppqn clock at `bpm`, each moved by noise of `jitter` of the pulse period."""
    period_ns = 60e9 / (bpm * 24)
    times = []
    for i in range(first_index, first_index + count):
        noise = rng.gauss(0.0, jitter) if gaussian else rng.uniform(-jitter, jitter)
        times.append(int(start_ns + i * period_ns + noise * period_ns))
    return times


# --- Timebase ----------------------------------------------------------------------------------------


def test_ticks_and_ns_at_120_bpm() -> None:
    tb = Timebase(120.0, origin_ns=1_000)
    assert tb.ns_at(PPQ) == 1_000 + 500_000_000
    assert tb.ticks_at(1_000 + 500_000_000) == PPQ
    assert tb.ticks_at(1_000 + 500_000_000 - 1) == PPQ - 1
    assert tb.ticks_at(0) == -1  # before the origin: negative ticks, floor


@pytest.mark.parametrize("bpm", [37.3, 90.0, 119.99, 120.0, 133.7, 180.0, 299.0])
def test_round_trip_is_exact(bpm: float) -> None:
    tb = Timebase(bpm, origin_ns=123_456_789, origin_ticks=-960)
    for ticks in list(range(-2000, 2000, 7)) + [10**7, 10**8 + 13]:
        assert tb.ticks_at(tb.ns_at(ticks)) == ticks
        assert tb.ticks_at(tb.ns_at(ticks) - 1) == ticks - 1


def test_with_tempo_keeps_position_and_does_not_drift() -> None:
    tb = Timebase(120.0, origin_ns=0)
    at_ns = 1_234_567_891
    before = tb.ticks_at(at_ns)
    faster = tb.with_tempo(140.0, at_ns)
    assert faster.ticks_at(at_ns) == before
    assert faster.bpm == 140.0
    # Re-anchoring at the same tempo thousands of times (a follower does it per pulse) never drifts.
    again = tb
    for k in range(1, 5000):
        again = again.with_tempo(120.0, k * 20_833_333)
    assert again.ticks_at(10**11) == tb.ticks_at(10**11)
    # Real tempo changes round the anchor to a whole ns: at most 1 ns each, never a growing error per tick.
    wobbly = tb
    for k in range(1, 1001):
        wobbly = wobbly.with_tempo(120.0 + (k % 2) * 0.01, k * 20_833_333)
    wobbly = wobbly.with_tempo(120.0, 1001 * 20_833_333)
    far = 10**6
    assert abs(wobbly.ns_at(far) - tb.ns_at(far)) < 50_000_000  # the 0.01 BPM half the time, not drift
    assert wobbly.ticks_at(wobbly.ns_at(far)) == far


def test_with_position() -> None:
    tb = Timebase(100.0, origin_ns=5).with_position(16 * 120, at_ns=2_000_000_000)
    assert tb.ticks_at(2_000_000_000) == 1920
    assert tb.bar_beat(1920) == (2, 1, 0)


def test_grid_in_four_four() -> None:
    tb = Timebase(120.0, origin_ns=0)
    assert (tb.beat_ticks, tb.bar_ticks) == (PPQ, 4 * PPQ)
    assert tb.next_beat(0) == 0  # at or after
    assert tb.next_beat(1) == PPQ
    assert tb.next_beat(PPQ) == PPQ
    assert tb.next_bar(1) == 4 * PPQ
    assert tb.next_bar(4 * PPQ) == 4 * PPQ
    assert tb.next_bar(-5) == 0
    assert tb.bar_beat(0) == (1, 1, 0)
    assert tb.bar_beat(4 * PPQ + 2 * PPQ + 17) == (2, 3, 17)
    assert tb.bar_beat(-1) == (0, 4, PPQ - 1)


def test_grid_in_six_eight() -> None:
    tb = Timebase(90.0, origin_ns=0, beats_per_bar=6, beat_unit=8)
    assert tb.beat_ticks == PPQ // 2
    assert tb.bar_ticks == 3 * PPQ
    assert tb.bar_beat(3 * PPQ + PPQ // 2) == (2, 2, 0)


@pytest.mark.parametrize("kwargs", [{"bpm": 0.0}, {"bpm": -3.0}, {"beats_per_bar": 0}, {"beat_unit": 3}])
def test_bad_timebase_is_refused(kwargs: dict) -> None:
    args = {"bpm": 120.0, "origin_ns": 0, **kwargs}
    with pytest.raises(ValueError):
        Timebase(**args)


# --- TempoEstimator ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gaussian", [False, True])
@pytest.mark.parametrize("bpm", [60.0, 120.0, 180.0])
def test_locks_within_a_bar_and_holds_for_32_bars(bpm: float, gaussian: bool) -> None:
    rng = random.Random(1234)
    estimator = TempoEstimator()
    times = pulse_times(bpm, PULSES_PER_BAR * 33, rng, gaussian=gaussian)
    for index, t in enumerate(times):
        estimate = estimator.feed(t)
        if index + 1 >= PULSES_PER_BAR:
            assert estimate is not None
            assert abs(estimate - bpm) <= 0.5, f"pulse {index}: {estimate:.3f} BPM"
    assert estimator.locked
    assert estimator.relocks == 0


def test_no_estimate_before_min_pulses() -> None:
    estimator = TempoEstimator(min_pulses=12)
    results = [estimator.feed(t) for t in pulse_times(120.0, 12, random.Random(0))]
    assert results[:11] == [None] * 11
    assert results[11] is not None


@pytest.mark.parametrize(("old_bpm", "new_bpm"), [(120.0, 90.0), (120.0, 150.0), (90.0, 180.0)])
def test_relocks_on_a_tempo_change(old_bpm: float, new_bpm: float) -> None:
    rng = random.Random(7)
    estimator = TempoEstimator()
    before = pulse_times(old_bpm, 2 * PULSES_PER_BAR, rng)
    for t in before:
        estimator.feed(t)
    new_period = 60e9 / (new_bpm * 24)
    last = before[-1]
    estimates = []
    for k in range(1, 4 * PULSES_PER_BAR):
        estimates.append(estimator.feed(int(last + k * new_period + rng.uniform(-0.05, 0.05) * new_period)))
    # Within one bar of the change it is within 0.5 BPM, and it stays there.
    assert all(e is not None and abs(e - new_bpm) <= 0.5 for e in estimates[PULSES_PER_BAR:])
    assert estimator.relocks >= 1


def test_single_late_pulse_is_rejected_as_an_outlier() -> None:
    times = pulse_times(120.0, 200, random.Random(3), jitter=0.0)
    times[150] += 8_000_000  # an 8 ms hiccup on one pulse
    estimator = TempoEstimator()
    for t in times:
        estimate = estimator.feed(t)
    assert estimator.outliers == 1 and estimator.relocks == 0
    assert estimate is not None and abs(estimate - 120.0) < 0.01


def test_phase_follows_the_daw_grid() -> None:
    rng = random.Random(11)
    estimator = TempoEstimator()
    estimator.reset(next_pulse_ticks=0)  # transport Start: the next pulse is tick 0
    start_ns = 5 * 10**9
    times = pulse_times(120.0, 2 * PULSES_PER_BAR, rng, start_ns=start_ns)
    for t in times:
        estimator.feed(t)
    # The DAW's beat 3 of bar 3 (tick 4800) is at start + 10 beats * 0.5 s; the fit puts it within a tick.
    ideal_ns = start_ns + 10 * 500_000_000
    position = estimator.position_ticks_at(ideal_ns)
    assert position is not None and abs(position - 10 * PPQ) <= 1
    tb = estimator.timebase()
    assert tb is not None and abs(tb.ticks_at(ideal_ns) - 10 * PPQ) <= 1
    assert abs(tb.bpm - 120.0) <= 0.5


def test_song_position_moves_ticks_but_keeps_the_tempo() -> None:
    estimator = TempoEstimator()
    times = pulse_times(120.0, 48, random.Random(5), jitter=0.0)
    for t in times:
        estimator.feed(t)
    estimator.set_next_pulse_ticks(16 * 120)  # SPP: bar 2
    next_ns = times[-1] + (times[-1] - times[-2])
    estimator.feed(next_ns)
    assert estimator.pulse_ticks(estimator.pulse_count - 1) == 1920
    assert estimator.position_ticks_at(next_ns) in (1919, 1920)
    assert estimator.bpm is not None and abs(estimator.bpm - 120.0) < 0.01


def test_long_gap_restarts_the_fit() -> None:
    estimator = TempoEstimator()
    for t in pulse_times(120.0, 48, random.Random(2), jitter=0.0):
        estimator.feed(t)
    assert estimator.bpm is not None
    assert estimator.feed(10**12) is None  # minutes later: the old line means nothing
