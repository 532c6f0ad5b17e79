"""`companion bench harmonizer`: melody note in -> harmony notes out through the real runtime, in-process.

Three cases for each model (the chorale model's "chorale" style, the chord model's "block"), each a fresh
runtime with the shipped model and --seconds of melody notes: the key lock off,
the key lock on (the default: the key estimated from the melody, which changes the steering at phrase ends),
and the key lock on with a left hand changing chords on a chord channel every half bar, a little before the
melody note it goes with (a player's hands together).
"""

from __future__ import annotations

import random
import threading
import time
from contextlib import nullcontext
from typing import Any

from companion.core.engine import EngineSettings
from companion.core.timebase import Timebase
from companion.midi.clock import InternalClock
from companion.midi.loopback import LoopbackPorts
from companion.midi.realtime import lowest_realtime

BENCH_BPM = 200.0
MELODY_PITCHES = (67, 69, 71, 72, 74, 72, 71, 69, 67, 66, 67, 62, 64, 66, 67, 71, 72, 76, 74, 72, 71, 69, 67, 67)
LEFT_HAND = ((43, 47, 50), (48, 52, 55), (50, 54, 57), (40, 47, 52), (45, 48, 52), (50, 54, 57))  # G C D Em Am D
CHORD_CHANNEL = 1
NOTES_PER_BEAT = 2  # eighth notes
CHORD_EVERY_NOTES = 4  # a new left-hand chord every half bar, with the melody note on that beat
MIN_NOTES = 16  # --seconds sets the count (200 notes, a p99 that is the 2nd worst, take --seconds 30)
JITTER_MS = 15.0  # a player's timing around the grid
CHORD_LEAD_MS = 15.0  # the left hand's chord comes 0..this before its melody note
WARM_TIMEOUT_S = 60.0
_CASES: tuple[tuple[str, dict[str, Any], bool], ...] = (
    ("key lock off", {"key_lock": False}, False),
    ("key lock on (default)", {}, False),
    ("key lock on, left-hand chords every half bar", {"chord_channel": CHORD_CHANNEL}, True),
)
# each case for the chorale model (3 voices) and for the lead-sheet chord model ("block": a chord under every note)
CASES = tuple((f"{style}, {name}", {"harmony_style": style, **changes}, chords)
              for style in ("chorale", "block") for name, changes, chords in _CASES)

Event = tuple[int, list[int], bool]  # (when, MIDI bytes, is a melody note-on)


def _events(start_ns: int, beat_ns: int, count: int, rng: random.Random, chords: bool) -> list[Event]:
    """The melody in eighths within JITTER_MS of the grid; with `chords`, the left hand's chord changes too."""
    step_ns = beat_ns // NOTES_PER_BEAT
    events: list[Event] = []
    held: tuple[int, ...] = ()
    for i in range(count):
        pitch = MELODY_PITCHES[i % len(MELODY_PITCHES)]
        on_ns = start_ns + i * step_ns + int(rng.uniform(-JITTER_MS, JITTER_MS) * 1e6)
        events += [(on_ns, [0x90, pitch, 90], True), (on_ns + step_ns * 80 // 100, [0x80, pitch, 0], False)]
        if chords and i % CHORD_EVERY_NOTES == 0:
            chord_ns = on_ns - int(rng.uniform(0.0, CHORD_LEAD_MS) * 1e6)
            chord = LEFT_HAND[(i // CHORD_EVERY_NOTES) % len(LEFT_HAND)]
            events += [(chord_ns, [0x80 | CHORD_CHANNEL, p, 0], False) for p in held]
            events += [(chord_ns, [0x90 | CHORD_CHANNEL, p, 70], False) for p in chord]
            held = chord
    events.sort(key=lambda e: e[0])  # stable: a chord's note-offs stay before its note-ons
    end_ns = events[-1][0] + step_ns
    return events + [(end_ns, [0x80 | CHORD_CHANNEL, p, 0], False) for p in held]


def _play(send: Any, timebase: Timebase, count: int, seed: int, chords: bool) -> list[tuple[int, int]]:
    """Play the events on the clock's grid from the next bar; (sent_ns, pitch) of each melody note-on."""
    beat_ns = timebase.ns_at(timebase.beat_ticks) - timebase.ns_at(0)
    start_ns = timebase.ns_at(timebase.next_bar(timebase.ticks_at(time.monotonic_ns()) + timebase.beat_ticks))
    sent: list[tuple[int, int]] = []
    for when_ns, data, melody in _events(start_ns, beat_ns, count, random.Random(seed), chords):
        _sleep_until(when_ns)
        if melody:
            sent.append((time.monotonic_ns(), data[1]))
        send(data)
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

    The window is shorter than the way to the next 16th, where a voice may move under the held note."""
    samples = []
    for i, (sent_ns, _) in enumerate(sent):
        until_ns = min(sent_ns + window_ns, sent[i + 1][0] if i + 1 < len(sent) else sent_ns + window_ns)
        ons = [t for t, data in received if sent_ns <= t < until_ns and data[0] & 0xF0 == 0x90 and data[2] > 0]
        if ons:
            samples.append(max(ons) - sent_ns)
    return samples


def bench_harmony(seconds: float) -> list[dict[str, Any]]:
    """Melody note -> harmony notes out, in-process (loopback ports, the real runtime, the shipped model):
    every case headless, then with the UI open in its own process, attached to the runtime."""
    count = max(MIN_NOTES, int(seconds * BENCH_BPM / 60 * NOTES_PER_BEAT))
    return [_bench_case(name, changes, chords, count, ui) for ui in (False, True)
            for name, changes, chords in CASES]


def _bench_case(name: str, changes: dict[str, Any], chords: bool, count: int, ui: bool = False) -> dict[str, Any]:
    from companion.bench.suite import percentiles
    from companion.live.runtime import Runtime
    from companion.tui.bench_ui import ui_attached
    from companion.worker.generators import MarkovGenerator

    measure = f"harmony: melody note in -> harmony out, {name}{', UI attached' if ui else ''}"
    settings = EngineSettings(mode="harmonize", harmony_channels=(1, 2, 3), **changes)
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
            return {"measure": measure, "error": failed or "model load timed out"}
        player = to_engine.open_output()
        playing_s = count / (BENCH_BPM / 60 * NOTES_PER_BEAT) + 2.0
        with ui_attached(runtime, playing_s) if ui else nullcontext([]) as frames, lowest_realtime():
            # the player stands for a DAW's MIDI thread (and Companion's input reader)
            sent = _play(player.send, runtime.clock.timebase(), count, seed=1, chords=chords)
        worker = runtime.harmony.latency_stats()
        worker_counts = dict(runtime.harmony.counts)
    finally:
        runtime.close()
        receiver.close()
    with lock:
        samples = note_latencies(sent, list(received))
    return {"measure": measure, "target": "p99 <= 3 ms", **percentiles(samples), "notes_sent": len(sent),
            **({"ui_frames": frames[0] if frames else 0} if ui else {}),
            "worker_p50_ms": worker["p50_ms"], "worker_p99_ms": worker["p99_ms"], "worker_counts": worker_counts,
            "samples_ms": [s / 1e6 for s in samples]}
