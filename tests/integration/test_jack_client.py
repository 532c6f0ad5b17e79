"""Companion's own JACK client (companion/midi/jack.py + _jackmidi.c): one client holds both ports, as the
contract says (`companion:Companion In`, `companion:Companion Out`); rtmidi's JACK stays as the fallback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import JACKD_ARGS

from companion.midi import jack
from companion.midi.ports import PortEvent, PortWatcher, RtMidiInput, open_input, open_output

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not jack.available()[0], reason=f"no JACK shim: {jack.available()[1]}")]


def _jack_ports() -> list[str]:
    return subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10).stdout.split("\n")


@pytest.mark.skipif(shutil.which("jack_lsp") is None, reason="jack_lsp is not installed")
def test_companion_run_puts_both_ports_in_one_client_named_companion(poll: Callable[..., Any]) -> None:
    # An earlier test's Companion may still be closing: give it time to go, so its ports are not taken for ours.
    poll(lambda: not any(p.startswith("companion:") for p in _jack_ports()), 10.0)
    before = set(_jack_ports())
    taken = any(p.startswith("companion:") for p in before)  # another Companion here: JACK renames ours
    process = subprocess.Popen([sys.executable, "-m", "companion", "run", "--headless", "--backend", "jack"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def ours() -> list[str]:
            return [p for p in _jack_ports() if p.endswith((":Companion In", ":Companion Out")) and p not in before]

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


class OwnServer:
    """A JACK server of one test's own, which it may stop and start again (the shared one stays up)."""

    def __init__(self, poll: Callable[..., Any]) -> None:
        self.name = f"companion-test-{uuid.uuid4().hex[:8]}"
        self._poll = poll
        self._process: subprocess.Popen | None = None

    def _up(self) -> bool:
        env = {**os.environ, "JACK_DEFAULT_SERVER": self.name}
        return subprocess.run(["jack_lsp"], env=env, capture_output=True, timeout=10).returncode == 0

    def start(self) -> None:
        self._process = subprocess.Popen([JACKD_ARGS[0], "-n", self.name, *JACKD_ARGS[1:]],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert self._poll(self._up, 10.0), "the test's JACK server did not start"

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def own_jack(poll: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[OwnServer]:
    """A running server of the test's own; clients this process opens from now on go to it."""
    if shutil.which("jackd") is None or shutil.which("jack_lsp") is None:
        pytest.skip("no jackd here")
    server = OwnServer(poll)
    try:
        server.start()
        monkeypatch.setenv("JACK_DEFAULT_SERVER", server.name)
        yield server
    finally:
        server.stop()


def test_jack_going_away_is_reported_and_the_ports_come_back_with_it(
        own_jack: OwnServer, jack_client: Callable[..., Any], poll: Callable[..., Any]) -> None:
    tag = uuid.uuid4().hex[:8]
    events: list[PortEvent] = []
    watcher = PortWatcher(events.append)
    received: list[list[int]] = []
    midi_in = open_input("jack", port=None, callback=lambda d, t: received.append(d), client_name=f"cj-{tag}",
                         virtual_name="In")
    midi_out = open_output("jack", port=None, client_name=f"cj-{tag}", virtual_name="Out")
    for port in (midi_in, midi_out):
        watcher.watch(port)
    assert watcher.check() == []
    own_jack.stop()
    assert poll(lambda: midi_out.server_gone(), 5.0)  # type: ignore[attr-defined]
    midi_out.send([0x90, 60, 100])  # JACK is away: nothing sounds, nothing breaks
    watcher.check()
    assert [e.kind for e in events] == ["lost", "lost"] and all("went away" in e.text for e in events)
    assert sorted(watcher.lost()) == ["In", "Out"]
    own_jack.start()
    assert poll(lambda: (watcher.check(), [e.kind for e in events].count("restored") == 2)[1], 20.0), events
    assert watcher.lost() == []
    daw = jack_client("cj-back").connect_out(f"cj-{tag}:In").connect_in(f"cj-{tag}:Out")
    assert daw.send_until([0x90, 62, 80], lambda: [0x90, 62, 80] in received)
    assert poll(lambda: (midi_out.send([0x80, 62, 0]), daw.wait_for(
        lambda m: [0x80, 62, 0] in [d for d, _ in m], 0.05))[1], 5.0)
    daw.close()
    midi_in.close()
    midi_out.close()


def test_ports_close_cleanly_while_jack_is_away(own_jack: OwnServer, poll: Callable[..., Any]) -> None:
    tag = uuid.uuid4().hex[:8]
    midi_in = open_input("jack", port=None, callback=lambda d, t: None, client_name=f"cj-{tag}", virtual_name="In")
    midi_out = open_output("jack", port=None, client_name=f"cj-{tag}", virtual_name="Out")
    own_jack.stop()
    assert poll(lambda: midi_in.server_gone(), 5.0)  # type: ignore[attr-defined]
    assert not midi_out.revive()  # type: ignore[attr-defined]  # JACK is still away
    midi_out.close()
    midi_in.close()  # its reader ends, the dead client is let go once, nothing is closed twice
    assert midi_in.closed and midi_out.closed and f"cj-{tag}" not in jack.JackClient._clients  # noqa: SLF001


def test_closing_an_input_while_messages_pour_in_never_crashes(jack_client: Callable[..., Any],
                                                               poll: Callable[..., Any]) -> None:
    """rtmidi's callback crashed the process here; ours must close mid-stream, thirty times over."""
    import threading

    tag = uuid.uuid4().hex[:8]
    flood = jack_client("cj-flood").open_virtual_out(f"Flood {tag}")
    pouring = threading.Event()
    pouring.set()

    def pour() -> None:
        value = 0
        while pouring.is_set():
            flood.send([0xB0, 7, value])
            value = (value + 1) % 128
            time.sleep(0.0002)

    thread = threading.Thread(target=pour, daemon=True)
    thread.start()
    try:
        for _ in range(30):
            got: list[list[int]] = []
            midi_in = open_input("jack", port=f"Flood {tag}", callback=lambda d, t, got=got: got.append(d),
                                 client_name=f"cj-{tag}", virtual_name="In")
            assert poll(lambda got=got: len(got) >= 3, 5.0), "nothing arrived after re-opening"
            midi_in.close()
            assert all(d[:2] == [0xB0, 7] for d in got)  # whole messages only, never torn ones
    finally:
        pouring.clear()
        thread.join(timeout=2)


def test_messages_sent_just_before_an_output_closes_still_go_out(jack_client: Callable[..., Any]) -> None:
    """A session's closing note-offs are sent, then its ports close at once: every one must reach the synth."""
    tag = uuid.uuid4().hex[:8]
    synth = jack_client("cj-synth").open_virtual_in(f"Synth {tag}")
    for _ in range(3):
        midi_out = open_output("jack", port=f"Synth {tag}", client_name=f"cj-{tag}", virtual_name="Out")
        offs = [[0x80 | (n % 16), 36 + n, 0] for n in range(48)]
        before = len(synth.messages())
        for data in offs:
            midi_out.send(data)
        midi_out.close()
        expected = before + len(offs)
        assert synth.wait_for(lambda m, expected=expected: len(m) >= expected, 2.0), "note-offs lost at close"
        time.sleep(0.05)  # and nothing more: a closed port's last messages must not repeat
        assert [d for d, _ in synth.messages()[before:]] == offs
