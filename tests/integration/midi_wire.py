"""What the JACK tests share: playing events at absolute deadlines, and reading a received stream."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

Received = Sequence[tuple[list[int], int]]

# How late a note may come out of JACK and still count as on its beat in these tests: less than half a 16th at
# the tests' tempos (83-125 ms), so a note on the wrong grid slot still fails, with room for a CI VM that stalls
# (stalls of 26-60 ms were seen). The real targets (1-3 ms) are measured by `companion bench`, not asserted here.
ON_TIME_BOUND_MS = 50.0


def play_at(send: Callable[[list[int]], object], events: Sequence[tuple[int, list[int]]]) -> None:
    """Send each (deadline_ns, bytes) at its absolute deadline: sleep most of the way, spin the last millisecond."""
    for deadline_ns, data in sorted(events, key=lambda e: e[0]):
        while (left := deadline_ns - time.monotonic_ns()) > 1_000_000:
            time.sleep((left - 1_000_000) / 1e9)
        while time.monotonic_ns() < deadline_ns:
            pass
        send(data)


def note_ons(messages: Received) -> list[tuple[list[int], int]]:
    return [(d, t) for d, t in messages if d[0] & 0xF0 == 0x90 and d[2] > 0]


def left_sounding(messages: Received) -> int:
    """Notes still sounding at the end of a received stream (CC120/CC123 clears its channel)."""
    sounding: dict[tuple[int, int], int] = {}
    for data, _ in messages:
        kind, channel = data[0] & 0xF0, data[0] & 0x0F
        key = (channel, data[1] if len(data) > 1 else -1)
        if kind == 0x90 and data[2] > 0:
            sounding[key] = sounding.get(key, 0) + 1
        elif kind in (0x80, 0x90) and sounding.get(key):
            sounding[key] -= 1
        elif kind == 0xB0 and data[1] in (120, 123):
            sounding = {k: v for k, v in sounding.items() if k[0] != channel}
    return sum(sounding.values())
