"""Ports over a real JACK server: virtual ports, named connections, clear errors, a port lost and back."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from companion.errors import PortError
from companion.midi.ports import PortEvent, PortWatcher, list_backends, open_input, open_output

pytestmark = pytest.mark.jack


class RecordingCallback:
    """Keeps every (data, time_ns) an input port hands over."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[int], int]] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, data: list[int], time_ns: int) -> None:
        with self._lock:
            self.calls.append((data, time_ns))
            self.threads.add(threading.current_thread().name)

    def data(self) -> list[list[int]]:
        with self._lock:
            return [d for d, _ in self.calls]


def test_jack_is_listed_as_usable_with_virtual_ports() -> None:
    info = {b.name: b for b in list_backends()}["jack"]
    assert info.compiled and info.usable and info.virtual_ports
    assert info.why == ""


def test_virtual_ports_carry_messages_both_ways(jack_client: Callable[..., Any],
                                                poll: Callable[..., Any]) -> None:
    received = RecordingCallback()
    with open_input("jack", port=None, callback=received, virtual_name="Companion In ports-test") as midi_in, \
            open_output("jack", port=None, virtual_name="Companion Out ports-test") as midi_out:
        assert not midi_in.closed and not midi_out.closed
        daw = jack_client("fake-daw").connect_out("Companion In ports-test").connect_in("Companion Out ports-test")
        assert daw.send_until([0xF8], lambda: [0xF8] in received.data())  # clock is not filtered out
        sent_ns = daw.send([0x90, 60, 100])
        assert poll(lambda: [0x90, 60, 100] in received.data(), 5.0), received.calls
        assert set(map(tuple, received.data())) == {(0xF8,), (0x90, 60, 100)}
        assert received.calls[-1][1] >= sent_ns  # stamped on arrival
        assert poll(lambda: (midi_out.send([0x80, 60, 0]), daw.wait_for(
            lambda msgs: [0x80, 60, 0] in [d for d, _ in msgs], 0.05))[1], 5.0)
    assert midi_in.closed and midi_out.closed
    midi_in.close()  # closing twice is harmless


def test_named_ports_connect_by_case_insensitive_substring(jack_client: Callable[..., Any],
                                                           poll: Callable[..., Any]) -> None:
    daw = jack_client("fakedaw").open_virtual_out("Track 1 Out")
    received = RecordingCallback()
    with open_input("jack", port="track 1", callback=received, virtual_name="Companion In") as midi_in:
        assert midi_in.target == "fakedaw:Track 1 Out"
        assert daw.send_until([0xB0, 64, 127], lambda: [0xB0, 64, 127] in received.data()), received.calls


def test_unknown_port_name_lists_ports_and_suggests(jack_client: Callable[..., Any]) -> None:
    jack_client("fakedaw").open_virtual_out("Reaper Out")
    with pytest.raises(PortError) as caught:
        open_input("jack", port="reapr out", callback=RecordingCallback())
    text = str(caught.value)
    assert "'reapr out'" in text and "fakedaw:Reaper Out" in text and "Did you mean" in text
    assert "--in-port" in text


def test_sending_on_a_closed_port_is_a_port_error() -> None:
    midi_out = open_output("jack", port=None)
    midi_out.close()
    with pytest.raises(PortError, match="closed"):
        midi_out.send([0x90, 60, 1])


def test_watcher_reports_a_lost_port_and_reconnects_when_it_returns(jack_client: Callable[..., Any],
                                                                  poll: Callable[..., Any]) -> None:
    daw = jack_client("fakedaw").open_virtual_out("Live Out")
    received = RecordingCallback()
    events: list[PortEvent] = []
    with open_input("jack", port="live out", callback=received) as midi_in, \
            open_output("jack", port=None) as virtual_out:
        watcher = PortWatcher(events.append)
        watcher.watch(midi_in)
        watcher.watch(virtual_out)  # virtual: not watched, stays up
        assert watcher.check() == []
        assert daw.send_until([0x90, 1, 1], lambda: [0x90, 1, 1] in received.data())

        daw.close()  # the DAW quits
        assert poll(lambda: watcher.check() or events, 5.0)
        assert [e.kind for e in events] == ["lost"]
        assert "fakedaw:Live Out" in events[0].text and watcher.lost() == ["Companion In"]
        assert watcher.check() == []  # reported once, not every second

        daw_again = jack_client("fakedaw").open_virtual_out("Live Out")  # the DAW is back
        assert poll(lambda: watcher.check() or len(events) > 1, 5.0)
        assert [e.kind for e in events] == ["lost", "restored"] and watcher.lost() == []
        assert daw_again.send_until([0x90, 2, 2], lambda: [0x90, 2, 2] in received.data()), received.calls
        assert not virtual_out.closed
