"""`bench ui`: scheduler lateness, headless, the UI in this process, the UI attached from its own."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from companion.core.engine import EngineSettings
from companion.core.events import PPQ, Note
from companion.midi.realtime import READER_PRIORITY, try_realtime

BENCH_BPM = 160.0
UI_SIZE = (160, 50)


def _runtime() -> Any:
    from companion.live.runtime import Runtime
    from companion.midi.clock import InternalClock
    from companion.midi.loopback import LoopbackPorts
    from companion.worker.generators import MarkovGenerator

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


def measure(seconds: float, ui: str) -> dict[str, Any]:
    """Lateness of every scheduled send over `seconds`: ui "none" (headless), "in-process" (the app in this
    process, as before issue 14) or "attached" (the app in a process of its own, as `companion run` runs it)."""
    runtime = _runtime()
    stop = threading.Event()
    result: dict[str, int] = {}  # lateness of the sends made, and the note-ons skipped as too late to play

    def drive() -> None:
        # The player's notes stand for what an input port's reader thread (real-time) hands the engine.
        try_realtime(READER_PRIORITY)
        end_ns = _load(runtime, seconds, stop)
        while not stop.is_set() and (left_ns := end_ns - time.monotonic_ns()) > 0:
            time.sleep(left_ns / 1e9)
        result.update(runtime.scheduler.lateness_stats())
        result["skipped_late"] = runtime.scheduler.counts.get("skipped_late", 0)

    driver = threading.Thread(target=drive, name="bench-load")
    frames = 0
    try:
        if ui == "none":
            runtime.start()
            driver.start()
        elif ui == "attached":
            frames = _attached(runtime, driver, seconds)
        else:
            from companion.tui.app import build_app

            # The runtime starts once the app is up; the load starts with it.
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


def _attached(runtime: Any, driver: threading.Thread, seconds: float) -> int:
    """The app in a child process attached to the session socket, redrawing while the load plays; its frames."""
    runtime.start()
    with ui_attached(runtime, seconds + 1.0) as frames:
        driver.start()
    return frames[0] if frames else 0


@contextmanager
def ui_attached(runtime: Any, seconds: float) -> Iterator[list[int]]:
    """The app in a child process of its own (as `companion run` runs it), attached to `runtime`'s session
    socket and redrawing for `seconds`; the block runs once it is attached. The list yielded gets the frames
    it drew when the block ends (the child is waited for)."""
    from companion.live.session_server import SessionServer

    frames: list[int] = []
    with tempfile.TemporaryDirectory(prefix="companion-bench-") as tmp:
        server = SessionServer(runtime, Path(tmp) / "session.sock")
        child = subprocess.Popen([sys.executable, "-m", "companion.tui.bench_ui", "--attach", str(server.path),
                                  "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True)
        try:
            while server.attached == 0 and child.poll() is None:
                time.sleep(0.05)
            yield frames
            out, _ = child.communicate(timeout=seconds + 120)
            frames.append(int(out.strip().splitlines()[-1]) if out.strip() else 0)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            server.close()


def _run_attached(path: str, seconds: float) -> int:
    """The child's side: the app attached to `path`, redrawing for `seconds`; prints the frames it drew."""
    from companion.live.session_client import RemoteRuntime
    from companion.tui.app import build_app

    remote = RemoteRuntime(Path(path))
    app = build_app(remote)

    async def run_ui() -> None:
        async with app.run_test(size=UI_SIZE) as pilot:
            await pilot.pause(seconds)

    asyncio.run(run_ui())
    remote.close()
    print(app.roll.renders)
    return 0


UI_CASES = (("none", "headless"), ("in-process", "with the UI open in the same process (before issue 14)"),
            ("attached", "with the UI open in its own process (companion run)"))


def bench_ui(seconds: float) -> list[dict[str, Any]]:
    """Rows for `companion bench ui`: headless, the UI in the same process, the UI attached from its own."""
    rows = []
    for ui, label in UI_CASES:
        stats = measure(seconds, ui)
        rows.append({"measure": f"scheduler lateness {label}, {BENCH_BPM:g} BPM 16ths",
                     "target": "p99 <= 1 ms, none skipped", **stats})
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m companion.tui.bench_ui")
    parser.add_argument("--attach", required=True, help="the session socket (bench ui starts this child itself)")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    raise SystemExit(_run_attached(args.attach, args.seconds))
