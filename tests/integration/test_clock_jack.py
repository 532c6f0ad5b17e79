"""Clock over JACK: a test client plays 120 BPM MIDI clock with 5 % jitter into `Companion In`; we lock to it."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from companion.core.events import TICKS_PER_CLOCK_PULSE
from companion.midi.clock import MidiClockFollower
from companion.midi.codec import DecodeStats, decode
from companion.midi.ports import open_input
from companion.scheduler import sleep_until_ns

pytestmark = pytest.mark.jack

BPM = 120.0
PULSE_NS = round(60e9 / (BPM * 24))


class RecordingFollower:
    """Decodes what arrives and feeds the follower, remembering each pulse's arrival time."""

    def __init__(self) -> None:
        self.follower = MidiClockFollower(initial_bpm=90.0)
        self.stats = DecodeStats()
        self.pulse_times_ns: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, data: list[int], time_ns: int) -> None:
        message = decode(data, self.stats)
        if message is None:
            return
        with self.lock:
            self.follower.feed(message, time_ns)
            if data == [0xF8]:
                self.pulse_times_ns.append(time_ns)


def play_clock(send: Callable[[list[int]], int], pulses: int, stop: threading.Event) -> None:
    """FA, then F8 at absolute deadlines with +-5 % jitter, like a DAW on a busy machine."""
    rng = random.Random(5)
    send([0xFA])
    start_ns = time.monotonic_ns() + 2 * PULSE_NS
    for k in range(pulses):
        if stop.is_set():
            return
        sleep_until_ns(start_ns + k * PULSE_NS + round(rng.uniform(-0.05, 0.05) * PULSE_NS))
        send([0xF8])


def test_follower_locks_to_jittery_clock_over_jack(jack_client: Callable[..., Any],
                                                   poll: Callable[..., Any]) -> None:
    receiver = RecordingFollower()
    # A port name of its own, so a companion left running elsewhere on this server cannot be picked instead.
    with open_input("jack", port=None, callback=receiver, virtual_name="Companion In clock-test"):
        daw = jack_client("fake-daw").connect_out("Companion In clock-test")
        assert daw.send_until([0xFC], lambda: receiver.stats.decoded > 0)  # the connection carries messages
        stop = threading.Event()
        pulses = 2 * 96  # two bars
        player = threading.Thread(target=play_clock, args=(daw.send, pulses, stop), daemon=True)
        player.start()
        try:
            locked = poll(lambda: len(receiver.pulse_times_ns) >= 96 and abs(receiver.follower.bpm - BPM) < 0.5,
                          timeout_s=15.0)
            assert locked, (len(receiver.pulse_times_ns), receiver.follower.bpm)
            assert poll(lambda: len(receiver.pulse_times_ns) + receiver.follower.filled_pulses >= pulses, 15.0)
        finally:
            stop.set()
            player.join(timeout=5)
        with receiver.lock:
            follower = receiver.follower
            count = len(receiver.pulse_times_ns) + follower.filled_pulses
            last_ns = receiver.pulse_times_ns[-1]
            assert follower.running and abs(follower.bpm - BPM) < 0.5, follower.bpm
            # The last pulse counted from Start is at tick (count - 1) * 20: the DAW's bar position.
            position = follower.timebase().ticks_at(last_ns)
            assert abs(position - (count - 1) * TICKS_PER_CLOCK_PULSE) <= 5, (position, count)
