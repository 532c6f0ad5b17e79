"""`companion bench harmonizer`: melody note in -> harmony notes out through the real runtime, in-process."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from companion.core.engine import EngineSettings
from companion.core.timebase import Timebase
from companion.midi.clock import InternalClock
from companion.midi.loopback import LoopbackPorts

BENCH_BPM = 200.0
MELODY_PITCHES = (67, 69, 71, 72, 74, 72, 71, 69, 67, 66, 67, 62, 64, 66, 67, 71, 72, 76, 74, 72, 71, 69, 67, 67)
JITTER_MS = 15.0  # a player's timing around the beat
WARM_TIMEOUT_S = 60.0


def _play(send: Any, timebase: Timebase, count: int, seed: int) -> list[tuple[int, int]]:
    """A melody in quarter notes on the clock's beats, each within JITTER_MS of its beat; (sent_ns, pitch)."""
    rng = random.Random(seed)
    beat_ns = timebase.ns_at(timebase.beat_ticks) - timebase.ns_at(0)
    start_ns = timebase.ns_at(timebase.next_bar(timebase.ticks_at(time.monotonic_ns()) + timebase.beat_ticks))
    sent: list[tuple[int, int]] = []
    for i in range(count):
        pitch = MELODY_PITCHES[i % len(MELODY_PITCHES)]
        on_ns = start_ns + i * beat_ns + int(rng.uniform(-JITTER_MS, JITTER_MS) * 1e6)
        off_ns = on_ns + beat_ns * 85 // 100
        _sleep_until(on_ns)
        sent.append((time.monotonic_ns(), pitch))
        send([0x90, pitch, 90])
        _sleep_until(off_ns)
        send([0x80, pitch, 0])
    time.sleep(0.2)
    return sent


def _sleep_until(deadline_ns: int) -> None:
    while (left := deadline_ns - time.monotonic_ns()) > 1_000_000:
        time.sleep((left - 1_000_000) / 1e9)
    while time.monotonic_ns() < deadline_ns:
        pass


def note_latencies(sent: list[tuple[int, int]], received: list[tuple[int, list[int]]],
                   window_ns: int = 50_000_000) -> list[int]:
    """Per melody note, the time from its send to the last harmony note-on that answered it (if any did).

    The window is shorter than the way to the next beat, where a voice may move under the held note."""
    samples = []
    for i, (sent_ns, _) in enumerate(sent):
        until_ns = min(sent_ns + window_ns, sent[i + 1][0] if i + 1 < len(sent) else sent_ns + window_ns)
        ons = [t for t, data in received if sent_ns <= t < until_ns and data[0] & 0xF0 == 0x90 and data[2] > 0]
        if ons:
            samples.append(max(ons) - sent_ns)
    return samples


def bench_harmony(seconds: float) -> dict[str, Any]:
    """Melody note -> harmony notes out, in-process (loopback ports, the real runtime, the shipped model)."""
    from companion.bench import percentiles
    from companion.generators import MarkovGenerator
    from companion.runtime import Runtime

    settings = EngineSettings(mode="harmonize", harmony_channels=(1, 2, 3), key_lock=False)
    to_engine, from_engine = LoopbackPorts("Companion In"), LoopbackPorts("Companion Out")
    received: list[tuple[int, list[int]]] = []
    lock = threading.Lock()

    def on_receive(data: list[int], time_ns: int) -> None:
        with lock:
            received.append((time_ns, data))

    receiver = from_engine.open_input(on_receive)
    runtime = Runtime(settings, inputs=[to_engine.open_input], outputs=[from_engine.open_output()],
                      generator=MarkovGenerator(), clock=InternalClock(BENCH_BPM)).start()
    try:
        deadline = time.monotonic() + WARM_TIMEOUT_S
        while runtime.harmony is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if runtime.harmony is None or not runtime.harmony.wait_ready(max(0.0, deadline - time.monotonic())):
            failed = runtime.harmony.failed if runtime.harmony is not None else "the harmony worker did not start"
            return {"measure": "melody note -> harmony out (in-process)", "error": failed or "model load timed out"}
        player = to_engine.open_output()
        count = max(40, int(seconds * BENCH_BPM / 60))
        sent = _play(player.send, runtime.clock.timebase(), count, seed=1)
        worker = runtime.harmony.latency_stats()
    finally:
        runtime.close()
        receiver.close()
    with lock:
        samples = note_latencies(sent, list(received))
    return {"measure": "harmony: melody note in -> 3 voices out, in-process", "target": "p99 <= 3 ms",
            **percentiles(samples), "worker_p99_ms": worker["p99_ms"], "samples_ms": [s / 1e6 for s in samples]}
