"""The UI's clock chooser (SetClock) on a running runtime, over in-process loopback ports: internal -> the DAW's MIDI
clock -> internal, with --send-clock on. Switching to Ableton Link is in test_link_jack.py (a network namespace)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from midi_wire import play_at

from companion.core.engine import EngineSettings
from companion.live.intents import SetClock
from companion.live.runtime import Runtime
from companion.midi.clock import InternalClock
from companion.midi.loopback import LoopbackPorts
from companion.worker.generators import MarkovGenerator

DAW_BPM = 100.0
PULSE_NS = round(60e9 / (DAW_BPM * 24))


class Received:
    def __init__(self) -> None:
        self.items: list[tuple[list[int], int]] = []
        self.lock = threading.Lock()

    def __call__(self, data: list[int], time_ns: int) -> None:
        with self.lock:
            self.items.append((list(data), time_ns))

    def since(self, ns: int, status: int) -> list[int]:
        with self.lock:
            return [t for d, t in self.items if t >= ns and d[0] == status]


def test_clock_chooser_switches_the_source_live(poll: Callable[..., Any]) -> None:
    to_engine, from_engine = LoopbackPorts("Companion In"), LoopbackPorts("Companion Out")
    received = Received()
    receiver = from_engine.open_input(received)
    runtime = Runtime(EngineSettings(silence_beats=64.0, max_bars=None), inputs=[to_engine.open_input],
                      outputs=[from_engine.open_output()], generator=MarkovGenerator(), clock=InternalClock(150.0),
                      send_clock=True).start()
    daw = to_engine.open_output()
    try:
        assert poll(lambda: received.since(0, 0xF8), 2), "no MIDI clock from the internal clock"
        epoch = runtime.clock.epoch
        switched_ns = time.monotonic_ns()
        runtime.post_intent(SetClock("external"))
        assert poll(lambda: runtime.snapshot()["clock"] == "external", 2)
        assert runtime.clock.epoch != epoch  # plans on the old grid are void
        assert received.since(switched_ns, 0xFC), "a synth following our clock was not stopped"
        quiet_from = received.since(switched_ns, 0xFC)[-1]
        # The DAW is the master now: its clock sets the tempo, and nothing of ours goes out beside it.
        start_ns = time.monotonic_ns() + 20_000_000
        play_at(daw.send, [(start_ns, [0xFA])] + [(start_ns + k * PULSE_NS, [0xF8]) for k in range(36)])
        assert abs(runtime.clock.bpm - DAW_BPM) < 1.0, runtime.clock.bpm
        assert received.since(quiet_from, 0xF8) == [], "MIDI clock went out while following the DAW's"
        daw_ticks = runtime.clock.timebase().ticks_at(time.monotonic_ns())
        runtime.post_intent(SetClock("internal"))
        assert poll(lambda: runtime.snapshot()["clock"] == "internal", 2)
        # The internal clock goes on from the DAW's position and tempo, and our clock goes out again.
        timebase = runtime.clock.timebase()
        assert abs(timebase.bpm - DAW_BPM) < 1.0
        assert 0 <= timebase.ticks_at(time.monotonic_ns()) - daw_ticks < 480
        back_ns = time.monotonic_ns()
        assert poll(lambda: received.since(back_ns - 50_000_000, 0xF8), 2)
        runtime.post_intent(SetClock("nonsense"))
        assert poll(lambda: any("clock not changed" in text for _, text in runtime.snapshot()["log"]), 2)
        assert runtime.snapshot()["clock"] == "internal"
    finally:
        runtime.close()
        receiver.close()
