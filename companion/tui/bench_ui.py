"""Scheduler lateness with the terminal UI open and redrawing, against the same load headless (`bench ui`)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from companion.core.engine import EngineSettings
from companion.core.events import PPQ, Note

BENCH_BPM = 160.0
UI_SIZE = (160, 50)


def _runtime() -> Any:
    from companion.generators import MarkovGenerator
    from companion.midi.clock import InternalClock
    from companion.midi.loopback import LoopbackPorts
    from companion.runtime import Runtime

    settings = EngineSettings(silence_beats=1.0, response_bars=2)
    cable = LoopbackPorts("Companion Out")
    return Runtime(settings, inputs=[], outputs=[cable.open_output()], generator=MarkovGenerator(),
                   clock=InternalClock(BENCH_BPM), port_names={"backend": "loopback", "in": "-", "out": "-"})


def _load(runtime: Any, seconds: float, stop: threading.Event) -> int:
    """16ths from the scheduler and a player's phrase every other bar (so the roll and the engine both work)."""
    timebase = runtime.clock.timebase()
    start = timebase.next_beat(timebase.ticks_at(time.monotonic_ns()) + PPQ)
    step = PPQ // 4
    count = int(seconds * BENCH_BPM / 60 * 4)
    runtime.scheduler.submit([Note(60 + i % 12, 80, start + i * step, step // 2) for i in range(count)], "bench")
    end_ticks = start + count * step
    bar = timebase.bar_ticks
    for bar_start in range(start, end_ticks, 2 * bar):  # the player: eight 8ths, then a bar of silence
        for i in range(8):
            for ticks, data in ((bar_start + i * PPQ // 2, [0x90, 64 + i, 90]),
                                (bar_start + i * PPQ // 2 + PPQ // 4, [0x80, 64 + i, 0])):
                while not stop.is_set() and time.monotonic_ns() < timebase.ns_at(ticks):
                    time.sleep(0.002)
                runtime.inject(data)
    return timebase.ns_at(end_ticks + PPQ)


def measure(seconds: float, with_ui: bool) -> dict[str, Any]:
    """Lateness of every scheduled send over `seconds`, with the app open (headless driver, full redraws) or not."""
    runtime = _runtime()
    stop = threading.Event()
    result: dict[str, int] = {}  # lateness of the sends made, and the note-ons skipped as too late to play

    def drive() -> None:
        end_ns = _load(runtime, seconds, stop)
        while not stop.is_set() and time.monotonic_ns() < end_ns:
            time.sleep(0.02)
        result.update(runtime.scheduler.lateness_stats())
        result["skipped_late"] = runtime.scheduler.counts.get("skipped_late", 0)

    driver = threading.Thread(target=drive, name="bench-load")
    frames = 0
    try:
        if not with_ui:
            runtime.start()
            driver.start()
        else:
            from companion.tui.app import build_app

            # As `run_tui` does it: the runtime starts once the app is up; the load starts with it.
            app = build_app(runtime, on_ready=lambda: (runtime.start(), driver.start()))

            async def run_ui() -> None:
                async with app.run_test(size=UI_SIZE) as pilot:
                    while not driver.is_alive():
                        await pilot.pause(0.05)
                    while driver.is_alive():
                        await pilot.pause(0.05)

            asyncio.run(run_ui())
            frames = app.roll.renders
        driver.join()
    finally:
        stop.set()
        runtime.close()
    return {"n": result.get("count", 0), "p50_ms": result.get("p50_ns", 0) / 1e6,
            "p99_ms": result.get("p99_ns", 0) / 1e6, "max_ms": result.get("max_ns", 0) / 1e6,
            "skipped_late": result.get("skipped_late", 0), "ui_frames": frames}


def bench_ui(seconds: float) -> list[dict[str, Any]]:
    """Two rows for `companion bench ui`: headless, then with the UI open."""
    rows = []
    for with_ui in (False, True):
        stats = measure(seconds, with_ui)
        label = "with the UI open, redrawing" if with_ui else "headless"
        rows.append({"measure": f"scheduler lateness {label} ({BENCH_BPM:g} BPM 16ths + player)",
                     "target": "p99 <= 1 ms", **stats})
    return rows


if __name__ == "__main__":
    for row in bench_ui(10.0):
        print(row)
