"""Clock over JACK: a test client plays 120 BPM MIDI clock with 5 % jitter into `Companion In`; we lock to it."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from companion.core.events import TICKS_PER_CLOCK_PULSE
from companion.live.scheduler import sleep_until_ns
from companion.midi.clock import MidiClockFollower
from companion.midi.codec import DecodeStats, decode
from companion.midi.ports import open_input

pytestmark = pytest.mark.jack

BPM = 120.0
PULSE_NS = round(60e9 / (BPM * 24))


class RecordingFollower:
    """Decodes what arrives and feeds the follower, remembering each pulse's arrival time."""

    def __init__(self) -> None:
        self.follower = MidiClockFollower(initial_bpm=90.0)
        self.stats = DecodeStats()
        self.pulse_times_ns: list[int] = []  # every F8's arrival
        self.last_counted_ns = 0  # the last F8 the follower counted (a late one after a gap fill is not)
        self.lock = threading.Lock()

    def __call__(self, data: list[int], time_ns: int) -> None:
        message = decode(data, self.stats)
        if message is None:
            return
        with self.lock:
            late_before = self.follower.late_pulses
            self.follower.feed(message, time_ns)
            if data == [0xF8]:
                self.pulse_times_ns.append(time_ns)
                if self.follower.late_pulses == late_before:
                    self.last_counted_ns = time_ns

    def counted(self) -> int:
        """Pulses the follower counted: those that arrived, plus those it filled in, less filled ones that came late."""
        follower = self.follower
        return len(self.pulse_times_ns) + follower.filled_pulses - follower.late_pulses


def play_clock(send: Callable[[list[int]], int], pulses: int, stop: threading.Event,
               stalled: frozenset[int] = frozenset()) -> None:
    """FA, then F8 at absolute deadlines with +-5 % jitter, like a DAW on a busy machine.

    A pulse in `stalled` is held back and sent in a burst with the next one that is not (a sender that stalled).
    """
    rng = random.Random(5)
    send([0xFA])
    start_ns = time.monotonic_ns() + 2 * PULSE_NS
    owed = 0
    for k in range(pulses):
        if stop.is_set():
            return
        if k in stalled:
            owed += 1
            continue
        sleep_until_ns(start_ns + k * PULSE_NS + round(rng.uniform(-0.05, 0.05) * PULSE_NS))
        for _ in range(owed + 1):
            send([0xF8])
        owed = 0


# A stall holds pulses 150 and 151 back and sends them with 152: as the CI machine's stall once did.
@pytest.mark.parametrize("stalled", [frozenset(), frozenset({150, 151})], ids=["steady", "stall"])
def test_follower_locks_to_jittery_clock_over_jack(jack_client: Callable[..., Any], poll: Callable[..., Any],
                                                   stalled: frozenset[int]) -> None:
    receiver = RecordingFollower()
    # A port name of its own, so a companion left running elsewhere on this server cannot be picked instead.
    with open_input("jack", port=None, callback=receiver, virtual_name="Companion In clock-test"):
        daw = jack_client("fake-daw").connect_out("Companion In clock-test")
        assert daw.send_until([0xFC], lambda: receiver.stats.decoded > 0)  # the connection carries messages
        stop = threading.Event()
        pulses = 2 * 96  # two bars
        player = threading.Thread(target=play_clock, args=(daw.send, pulses, stop, stalled), daemon=True)
        player.start()
        try:
            locked = poll(lambda: len(receiver.pulse_times_ns) >= 96 and abs(receiver.follower.bpm - BPM) < 0.5,
                          timeout_s=15.0)
            assert locked, (len(receiver.pulse_times_ns), receiver.follower.bpm)
            assert poll(lambda: receiver.counted() >= pulses, 15.0)
        finally:
            stop.set()
            player.join(timeout=5)
        with receiver.lock:
            follower = receiver.follower
            count = receiver.counted()
            last_ns = receiver.last_counted_ns
            assert follower.running and abs(follower.bpm - BPM) < 0.5, follower.bpm
            # The stalled pulses were filled in on time and not counted again when they came in the burst.
            assert follower.late_pulses >= len(stalled), (follower.filled_pulses, follower.late_pulses)
            # The last pulse counted from Start is at tick (count - 1) * 20: the DAW's bar position.
            position = follower.timebase().ticks_at(last_ns)
            assert abs(position - (count - 1) * TICKS_PER_CLOCK_PULSE) <= 5, (position, count)
