"""`companion bench link`: the scheduler's notes against an Ableton Link session's beat grid, as another peer sees it.

Two Link peers in this process: Companion's LinkClock driving the real scheduler thread (a note on every 16th),
and a second peer that changes the session's tempo every two seconds. Each note-on's send time is compared with
the 16th line nearest to it on the second peer's timeline: the error of the whole chain (Link's phase between
peers, LinkClock's reading at every wait, the scheduler's lateness). The second peer changes the tempo of any
session it joins, so the bench runs only where loopback is the sole network interface, e.g.
`sudo unshare -n sh -c 'ip link set lo up && companion bench link'`.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from typing import Any

from companion.bench.load import Row
from companion.core.events import PPQ, Note
from companion.errors import ClockError
from companion.live.runtime import GIL_SWITCH_INTERVAL_S
from companion.live.scheduler import Scheduler
from companion.midi.link import LinkClock, load_link

TEMPOS = (120.0, 137.0, 96.0, 160.0, 111.0)  # the other peer's tempo changes, one every CHANGE_S
CHANGE_S = 2.0
JOIN_TIMEOUT_S = 10.0
QUANTUM = 4.0
ISOLATE_HINT = "sudo unshare -n sh -c 'ip link set lo up && companion bench link'"


def _isolated() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


class _OtherPeer:
    """The session as another peer sees it: tempo changes, and its beat grid in monotonic ns."""

    def __init__(self, module: Any, bpm: float) -> None:
        self.link = module.Link(bpm)
        self.clock = self.link.clock()
        self.link.enabled = True

    def set_tempo(self, bpm: float) -> None:
        state = self.link.captureAppSessionState()
        state.setTempo(bpm, self.clock.micros())
        self.link.commitAppSessionState(state)

    def grid_error_ns(self, sent_ns: list[int]) -> list[int]:
        """Each send time minus the nearest 16th line of the session (read before the next tempo change)."""
        state = self.link.captureAppSessionState()
        before = time.monotonic_ns()
        micros = self.clock.micros()
        offset_ns = micros * 1000 - (before + time.monotonic_ns()) // 2
        errors = []
        for ns in sent_ns:
            beat = state.beatAtTime((ns + offset_ns) // 1000, QUANTUM)
            errors.append(ns - (state.timeAtBeat(round(beat * 4) / 4, QUANTUM) * 1000 - offset_ns))
        return errors


def bench_link(seconds: float) -> list[Row]:
    """Scheduler lateness against Link's beat grid, with another peer changing the tempo every 2 s."""
    from companion.bench.suite import percentiles

    if not _isolated():
        raise ClockError(f"the Link bench changes the session's tempo: run it alone on loopback ({ISOLATE_HINT})")
    module = load_link()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    other = _OtherPeer(module, TEMPOS[0])
    clock = LinkClock(100.0, 4, 4)
    sent: list[int] = []
    lock = threading.Lock()

    def record(data: list[int]) -> None:
        if data[0] & 0xF0 == 0x90:
            now_ns = time.monotonic_ns()
            with lock:
                sent.append(now_ns)

    scheduler: Scheduler | None = None
    try:
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while clock.peers < 1 or abs(clock.timebase().bpm - TEMPOS[0]) > 0.01:
            if time.monotonic() > deadline:
                raise ClockError(f"the two Link peers of the bench did not find each other in {JOIN_TIMEOUT_S:g} s")
            if clock.peers:  # joined: whichever session won, the other peer sets the tempo
                other.set_tempo(TEMPOS[0])
            time.sleep(0.01)
        time.sleep(0.3)  # the phase of the join has settled (a jump of the position would void the notes)
        scheduler = Scheduler(record, clock).start()
        timebase = clock.timebase()
        first = timebase.next_beat(timebase.ticks_at(time.monotonic_ns()) + PPQ)
        step = PPQ // 4
        count = int(seconds * max(TEMPOS) / 60 * 4) + 32
        scheduler.submit([Note(60 + k % 12, 90, first + k * step, step // 2) for k in range(count)], "bench")
        errors, reads = _measure(other, clock, sent, lock, seconds)
        lateness = scheduler.lateness_stats()
    finally:
        if scheduler is not None:
            scheduler.close()
        clock.close()
        other.link.enabled = False
    return [{"measure": "note-on vs Link's 16th grid, another peer changing tempo every 2 s",
             "target": "p99 <= 1 ms", **percentiles([abs(e) for e in errors]),
             "skipped_late": scheduler.counts["skipped_late"], "dropped_on_jump": scheduler.counts["dropped_on_jump"]},
            {"measure": "the scheduler's own lateness in that run (against LinkClock's deadlines)",
             "target": "p99 <= 1 ms", "n": lateness["count"], "p50_ms": lateness["p50_ns"] / 1e6,
             "p99_ms": lateness["p99_ns"] / 1e6, "max_ms": lateness["max_ns"] / 1e6},
            {"measure": "LinkClock.timebase(): one read of the session", "target": "",
             "value": f"{reads:.1f} us"}]


def _measure(other: _OtherPeer, clock: LinkClock, sent: list[int], lock: threading.Lock,
             seconds: float) -> tuple[list[int], float]:
    """Run for `seconds`, changing the tempo on schedule; each send is judged before the next change."""
    errors: list[int] = []
    judged = 0
    start = time.monotonic()
    change = 1
    while time.monotonic() - start < seconds:
        time.sleep(0.005)
        with lock:
            fresh = sent[judged:]
        judged += len(fresh)
        errors += other.grid_error_ns(fresh)
        if time.monotonic() - start >= change * CHANGE_S:
            other.set_tempo(TEMPOS[change % len(TEMPOS)])
            change += 1
    began = time.perf_counter()
    for _ in range(1000):
        clock.timebase()
    return errors, (time.perf_counter() - began) * 1000
