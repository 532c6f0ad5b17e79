"""The app attached from another side of the session socket: the real runtime serves it, keys reach the engine,
and quitting the app only detaches (the runtime plays on)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from companion.core.engine import EngineSettings
from companion.live.runtime import Runtime
from companion.live.session_client import RemoteRuntime
from companion.live.session_server import SessionServer
from companion.midi.clock import InternalClock
from companion.midi.loopback import LoopbackPorts
from companion.tui.app import build_app
from companion.worker.generators import MarkovGenerator

from .conftest import SIZE


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[Runtime, SessionServer]]:
    runtime = Runtime(EngineSettings(), inputs=[], outputs=[LoopbackPorts("Companion Out").open_output()],
                      generator=MarkovGenerator(), clock=InternalClock(120.0)).start()
    server = SessionServer(runtime, tmp_path / "session.sock")
    yield runtime, server
    server.close()
    runtime.close()


def _until(predicate, timeout_s: float = 10.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(predicate())


def test_keys_in_an_attached_app_change_the_running_engine_and_quit_only_detaches(session) -> None:
    runtime, server = session
    remote = RemoteRuntime(server.path)
    app = build_app(remote, on_ready=remote.start)

    async def drive() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.3)
            before = runtime.engine.settings.mode
            await pilot.press("m")
            assert _until(lambda: runtime.engine.settings.mode != before), "the mode key did not reach the engine"
            await pilot.pause(0.3)
            assert app.last_snapshot["settings"]["mode"] == runtime.engine.settings.mode
            await pilot.press("q")

    asyncio.run(drive())
    assert _until(lambda: server.attached == 0), "the app did not detach"
    assert not runtime.closed and runtime.error is None, "quitting an attached UI stopped the session"
    again = RemoteRuntime(server.path)  # and a UI can attach again
    assert again.snapshot()["settings"]["mode"] == runtime.engine.settings.mode
    again.close()


def test_an_attached_app_quits_with_a_message_when_the_session_ends(session) -> None:
    runtime, server = session
    remote = RemoteRuntime(server.path)
    app = build_app(remote)

    async def drive() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.3)
            server.close()
            for _ in range(100):
                if app.return_code is not None:
                    break
                await pilot.pause(0.05)

    asyncio.run(drive())
    assert app.return_code == 1 and remote.lost
