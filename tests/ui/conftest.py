"""UI fixtures: a FakeRuntime that records intents and injected MIDI and serves scripted snapshots."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from companion.core.engine import ChangeSettings
from companion.core.events import PPQ
from companion.tui.app import CompanionApp, build_app

SIZE = (140, 42)  # a large terminal; SMALL is the classic 80x24
SMALL = (80, 24)
BAR_TICKS = 4 * PPQ


def scripted_snapshot() -> dict[str, Any]:
    """A mid-song picture: bar 9, the player's phrase behind the playhead, Companion answering, notes planned ahead."""
    now = 8 * BAR_TICKS + 2 * PPQ  # bar 9, beat 3
    player = [("player", p, 6 * BAR_TICKS + i * PPQ, 6 * BAR_TICKS + i * PPQ + PPQ // 2)
              for i, p in enumerate((60, 62, 64, 65, 67, 65, 64, 62))]
    companion = [("companion", p, 8 * BAR_TICKS + i * PPQ // 2, 8 * BAR_TICKS + (i + 1) * PPQ // 2)
                 for i, p in enumerate((67, 69, 71, 72))]
    companion.append(("companion", 74, now - PPQ // 4, None))  # sounding now
    planned = [(72 + i % 3, now + i * PPQ // 2, now + (i + 1) * PPQ // 2, i < 3) for i in range(8)]
    return {
        "engine": {"mode": "call_response", "phrases": 3, "answering": True, "key": "C major",
                   "now_ticks": now, "capturing": False},
        "settings": {"mode": "call_response", "temperature": 1.0, "response_bars": 2, "key_lock": True,
                     "beats_per_bar": 4, "seed": 0},
        "bpm": 120.0, "ticks": now, "bar": 9, "beat": 3, "beats_per_bar": 4,
        "clock": "internal", "clock_running": True, "generator": "markov", "generation_ms": 4.2,
        "counters": {"notes_in": 8, "notes_out": 4, "answers": 3},
        "malformed": {},
        "lateness": {"p50_ns": 150_000, "p99_ns": 900_000, "max_ns": 2_100_000, "count": 40},
        "log": [("info", "answering with the markov model")],
        "ports": {"backend": "jack", "in": "Companion In (virtual)", "out": "Companion Out (virtual)", "lost": []},
        "notes": player + companion,
        "planned": planned,
        "preset": "trading-fours",
    }


class FakeRuntime:
    """Stands in for companion.live.runtime.Runtime: the four calls the UI may make, recorded."""

    def __init__(self, snap: dict[str, Any] | None = None) -> None:
        self.snap = snap if snap is not None else scripted_snapshot()
        self.intents: list[object] = []
        self.injected: list[list[int]] = []
        self.close_calls = 0
        self.snapshot_threads: set[int] = set()
        self.listeners: list[Callable[[str, str], None]] = []
        self.started = False
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        self.snapshot_threads.add(threading.get_ident())
        with self._lock:
            return copy.deepcopy(self.snap)

    def set_engine(self, **values: Any) -> None:
        with self._lock:
            self.snap["engine"] = {**self.snap.get("engine", {}), **values}

    def post_intent(self, intent: object) -> None:
        """Recorded; a settings change also shows in the next snapshot, as the engine would apply it."""
        self.intents.append(intent)
        if isinstance(intent, ChangeSettings):
            with self._lock:
                self.snap["settings"] = {**self.snap.get("settings", {}), **intent.changes}

    def inject(self, data: list[int]) -> None:
        self.injected.append(list(data))

    def close(self) -> None:
        self.close_calls += 1

    def start(self) -> FakeRuntime:
        self.started = True
        return self

    def add_log_listener(self, listener: Callable[[str, str], None]) -> None:
        self.listeners.append(listener)

    def emit_log(self, level: str, text: str) -> None:
        for listener in self.listeners:
            listener(level, text)

    def intents_of(self, kind: type) -> list[Any]:
        return [i for i in self.intents if isinstance(i, kind)]


class FakeClock:
    """monotonic_ns for the keyboard piano's gates, moved by the test."""

    def __init__(self) -> None:
        self.now_ns = 1_000_000_000

    def __call__(self) -> int:
        return self.now_ns


@pytest.fixture
def fake_runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(fake_runtime: FakeRuntime, fake_clock: FakeClock) -> Callable[..., CompanionApp]:
    def make(**options: Any) -> CompanionApp:
        options.setdefault("clock_ns", fake_clock)
        return build_app(fake_runtime, **options)

    return make


async def wait_until(pilot: Any, predicate: Callable[[], Any], timeout_s: float = 5.0) -> Any:
    """Let the app run until `predicate()` holds or the deadline passes; returns its last value (no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = predicate()
        if value or loop.time() >= deadline:
            return value
        await pilot.pause(0.01)


@pytest.fixture
def run_pilot() -> Callable[..., None]:
    """`run_pilot(app, scenario)`: run `scenario(pilot)` inside `app.run_test()` at the fixed size (no async plugin)."""

    def run(app: CompanionApp, scenario: Callable[[Any], Awaitable[None]], size: tuple[int, int] = SIZE) -> None:
        async def main() -> None:
            async with app.run_test(size=size) as pilot:
                await pilot.pause()
                await scenario(pilot)

        asyncio.run(main())

    return run
