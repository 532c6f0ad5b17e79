"""What a UI may say to the real-time process: every intent crosses intact; anything else is refused, said why."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from companion.core.engine import ChangeSettings, EngineSettings, PanicIntent, Regenerate, SetMode, StorePhrase
from companion.errors import CompanionError
from companion.live.intents import ChoosePorts, Learn, LoadPreset, SetRecording
from companion.live.runtime import Runtime
from companion.live.session_client import RemoteRuntime, SessionError
from companion.live.session_server import SessionServer, intent_fields, intent_from
from companion.midi.clock import InternalClock
from companion.midi.loopback import LoopbackPorts
from companion.wire import WireError, decode, encode
from companion.worker.generators import MarkovGenerator

INTENTS = [SetMode("duet"), ChangeSettings({"temperature": 0.8, "harmony_channels": (1, 2, 3)}), PanicIntent(),
           Regenerate(new_seed=True), StorePhrase(), ChoosePorts("Keys", None, "jack"),
           Learn("temperature", 21, None, 0.1, 2.0), LoadPreset("duet"), SetRecording(True)]


@pytest.mark.parametrize("intent", INTENTS, ids=lambda i: type(i).__name__)
def test_every_intent_crosses_intact(intent: object) -> None:
    assert intent_from(decode(encode("intent", intent=intent_fields(intent)))["intent"]) == intent


@pytest.mark.parametrize("message, says", [
    ({"kind": "Shutdown", "fields": {}}, "unknown kind 'Shutdown'"),
    ({"kind": "SetMode", "fields": {"name": "duet", "now": 1}}, "fields ['name', 'now']"),
    ({"kind": "SetMode", "fields": {}}, "SetMode"),
])
def test_an_intent_that_is_not_ours_is_refused(message: dict, says: str) -> None:
    with pytest.raises(WireError) as err:
        intent_from(message)
    assert says in err.value.message


def test_the_session_refuses_bad_messages_and_serves_on(tmp_path: Path) -> None:
    runtime = Runtime(EngineSettings(), inputs=[], outputs=[LoopbackPorts("x").open_output()],
                      generator=MarkovGenerator(), clock=InternalClock(120.0)).start()
    server = SessionServer(runtime, tmp_path / "s.sock")
    try:
        remote = RemoteRuntime(server.path)
        remote._send("inject", data=[0x90, 300, 1])  # noqa: SLF001 - a UI with a bug: 300 is no MIDI byte
        remote._send("picture", snapshot={})  # noqa: SLF001 - not a message a UI sends
        deadline = time.monotonic() + 5
        while len(remote.refused) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "inject: one MIDI message" in remote.refused[0] and "not a message a UI sends" in remote.refused[1]
        remote.post_intent(SetMode("duet"))
        while remote.snapshot()["settings"]["mode"] != "duet" and time.monotonic() < deadline + 5:
            time.sleep(0.01)
        assert remote.snapshot()["settings"]["mode"] == "duet", "served on after refusing"
        with pytest.raises(CompanionError, match="another Companion session is listening"):
            SessionServer(runtime, server.path)
        remote.close()
    finally:
        server.close()
        runtime.close()
    with pytest.raises(SessionError, match="no Companion session at"):
        RemoteRuntime(server.path)


def test_a_connection_closed_under_its_reader_ends_the_lines_without_an_error() -> None:
    """The session closes a UI's socket between two reads of its serving thread: the lines end quietly (the
    thread used to die with 'Bad file descriptor' on the terminal)."""
    import os
    import socket

    from companion.live.session_server import _Client

    ours, theirs = socket.socketpair()
    client = _Client(ours)
    lines = client.lines()
    theirs.sendall(b'{"type": "snapshot"}\n')
    assert next(lines) == b'{"type": "snapshot"}\n'
    os.close(ours.fileno())  # the descriptor gone under the reader, as when the session's close wins the race
    assert list(lines) == []
    ours.detach()  # the socket object forgets the closed descriptor (never closes a reused number later)
    client.close()  # ends its writer thread
    theirs.close()
