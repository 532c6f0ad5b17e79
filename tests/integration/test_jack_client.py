"""Companion's own JACK client (companion/midi/jack.py + _jackmidi.c): one client holds both ports, as the
contract says (`companion:Companion In`, `companion:Companion Out`); rtmidi's JACK stays as the fallback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from companion.midi import jack
from companion.midi.ports import RtMidiInput, open_input, open_output

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not jack.available()[0], reason=f"no JACK shim: {jack.available()[1]}")]


def _jack_ports() -> list[str]:
    return subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10).stdout.split("\n")


@pytest.mark.skipif(shutil.which("jack_lsp") is None, reason="jack_lsp is not installed")
def test_companion_run_puts_both_ports_in_one_client_named_companion(poll: Callable[..., Any]) -> None:
    taken = any(p.startswith("companion:") for p in _jack_ports())  # another Companion here: JACK renames ours
    process = subprocess.Popen([sys.executable, "-m", "companion", "run", "--headless", "--backend", "jack"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def ours() -> list[str]:
            return [p for p in _jack_ports() if p.endswith((":Companion In", ":Companion Out"))]

        found = poll(lambda: (lambda f: f if len(f) >= 2 else [])(ours()), 20.0) or ours()
        clients = {p.split(":")[0] for p in found}
        assert len(found) >= 2 and len(clients) == 1 or taken, f"ports: {found}"
        if not taken:
            assert sorted(found) == ["companion:Companion In", "companion:Companion Out"]
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert process.returncode == 0, output
    assert not [p for p in _jack_ports() if p in ("companion:Companion In", "companion:Companion Out")] or taken


def test_messages_cross_and_arrive_stamped(jack_client: Callable[..., Any], poll: Callable[..., Any]) -> None:
    tag = uuid.uuid4().hex[:8]
    received: list[tuple[list[int], int]] = []
    with open_input("jack", port=None, callback=lambda d, t: received.append((d, t)), client_name=f"cj-{tag}",
                    virtual_name="In") as midi_in, \
            open_output("jack", port=None, client_name=f"cj-{tag}", virtual_name="Out") as midi_out:
        assert isinstance(midi_in, jack.JackInput) and isinstance(midi_out, jack.JackOutput)
        daw = jack_client("cj-daw").connect_out(f"cj-{tag}:In").connect_in(f"cj-{tag}:Out")
        sent_ns = time.monotonic_ns()
        assert daw.send_until([0x90, 61, 99], lambda: [0x90, 61, 99] in [d for d, _ in received])
        assert sent_ns <= received[-1][1] <= time.monotonic_ns()  # stamped by JACK's thread on arrival
        burst = [[0xB0, 1, v] for v in range(100)]  # a knob turned fast: nothing lost, nothing reordered
        for data in burst:
            midi_out.send(data)
        assert daw.wait_for(lambda m: [d for d, _ in m if d[0] == 0xB0] == burst, 5.0)
        daw.send([0xF0, 1, 2, 3, 0xF7])  # SysEx is ignored, clock is kept
        daw.send([0xF8])
        assert poll(lambda: [0xF8] in [d for d, _ in received], 5.0)
        assert not [d for d, _ in received if d[0] == 0xF0]


def test_a_port_opened_while_its_name_is_held_takes_the_name_when_the_holder_closes() -> None:
    tag = uuid.uuid4().hex[:8]
    first = open_output("jack", port=None, client_name=f"cj-{tag}", virtual_name="Companion Out")
    second = open_output("jack", port=None, client_name=f"cj-{tag}", virtual_name="Companion Out")
    try:
        client = second._client  # noqa: SLF001 - the port's JACK name is what other tools see
        assert client is not None
        assert client.full_name(second._slot) == f"cj-{tag}:Companion Out (2)"  # noqa: SLF001
        first.close()
        assert client.full_name(second._slot) == f"cj-{tag}:Companion Out"  # noqa: SLF001
    finally:
        first.close()
        second.close()
    assert not [p for p in _jack_ports() if p.startswith(f"cj-{tag}:")], "the client outlived its last port"


def test_rtmidi_stays_available_as_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(jack.FORCE_RTMIDI_ENV, "1")
    assert jack.available() == (False, f"{jack.FORCE_RTMIDI_ENV}=1 asks for rtmidi's JACK")
    with open_input("jack", port=None, callback=lambda d, t: None, client_name="cj-rtmidi",
                    virtual_name=f"In {os.getpid()}") as midi_in:
        assert isinstance(midi_in, RtMidiInput)
