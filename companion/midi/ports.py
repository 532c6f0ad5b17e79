"""MIDI ports: virtual or named ports on rtmidi's backends (ALSA, JACK, CoreMIDI, WinMM), and reconnection."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from companion.errors import PortError
from companion.midi.backends import (  # noqa: F401  (re-exported: the ports API in one place)
    _ALSA_SEQ_PATH,
    _WHY_NO_ALSA_SEQ,
    _WHY_NO_JACK,
    _WHY_WINMM,
    BACKENDS,
    BackendInfo,
    _api,
    _rtmidi,
    find_port,
    format_backends,
    jack_period_ns,
    list_backends,
    pick_backend,
)
from companion.midi.port_base import BasePort, InputCallback, InputPort, OutputPort  # noqa: F401  (re-exported)
from companion.midi.realtime import READER_PRIORITY, native_threads, note_jack_client, try_realtime

POLL_INTERVAL_S = 0.0001  # an input's reader looks at rtmidi's queue this often while music is flowing...
POLL_IDLE_S = 0.0005  # ...and this often after IDLE_AFTER_NS of silence (an idle app should not burn a core)
IDLE_AFTER_NS = 2_000_000_000


# --- rtmidi backends ------------------------------------------------------------------------------


class _RtMidiMixin:
    """Shared rtmidi state: the backend object, what we connected to, and reopening after a loss."""

    backend: str
    query: str | None  # what the user asked for (substring); None for a virtual port
    target: str | None  # the full name of the port we are connected to
    client_name: str
    local_name: str
    _midi: Any
    _lock: threading.RLock
    direction: str

    def _connect(self, rtmidi: Any) -> None:
        if self.query is None:
            self._midi.open_virtual_port(self.local_name)
            return
        names = self._midi.get_ports()
        index = find_port(names, self.query, self.direction, self.backend)
        self._midi.open_port(index, self.local_name)
        self.target = names[index]

    def available_ports(self) -> list[str]:
        """Ports this port could connect to, listed through its own client (no new client is made)."""
        with self._lock:
            return list(self._midi.get_ports())

    def reconnect(self) -> bool:
        """Re-open the named connection if a matching port exists again; True on success."""
        rtmidi = _rtmidi()
        with self._lock:
            if self.query is None or self._midi is None:
                return False
            self._midi.close_port()
            try:
                self._connect(rtmidi)
            except (PortError, rtmidi.RtMidiError):
                return False
            self._configure()
            return True

    def _configure(self) -> None:
        """Set up the rtmidi object after a (re)connect; inputs install their callback here."""


def _open_rtmidi(port: Any, factory_name: str) -> None:
    rtmidi = _rtmidi()
    api = _api(rtmidi, port.backend)
    if port.query is None and port.backend == "winmm":
        raise PortError(f"cannot open virtual port {port.local_name!r}: {_WHY_WINMM}")
    if port.backend == "alsa" and not os.path.exists(_ALSA_SEQ_PATH):
        raise PortError(f"cannot open {port.local_name!r} on ALSA: {_WHY_NO_ALSA_SEQ}")
    threads_before = native_threads()
    try:
        port._midi = getattr(rtmidi, factory_name)(api, port.client_name)
    except rtmidi.RtMidiError as err:
        why = _WHY_NO_JACK if port.backend == "jack" else str(err)
        raise PortError(
            f"cannot open MIDI {port.direction} {port.local_name!r} on {port.backend}: {why}"
        ) from err
    try:
        port._connect(rtmidi)
        if port.backend == "jack":
            note_jack_client(threads_before)  # its process thread now bounds our threads' real-time priority
    except rtmidi.RtMidiError as err:
        port._midi.delete()
        port._midi = None
        raise PortError(
            f"cannot open MIDI {port.direction} {port.query or port.local_name!r} on {port.backend}: {err}. "
            "Check that the port exists and no other program holds it exclusively "
            "(`companion ports` lists them)."
        ) from err
    except PortError:
        port._midi.delete()
        port._midi = None
        raise


def _close_rtmidi(port: Any) -> None:
    if port._midi is not None:
        port._midi.close_port()
        port._midi.delete()
        port._midi = None


class RtMidiInput(_RtMidiMixin, InputPort):
    """An rtmidi input: clock on, SysEx and active sensing ignored, each message stamped on arrival.

    A reader thread of ours polls rtmidi's queue instead of installing rtmidi's callback: python-rtmidi frees
    its callback while the backend's thread may still be inside it, so closing a port that is receiving
    could crash the process (seen on JACK). It polls every 0.1 ms while notes flow (about 0.05 ms added on
    average) and every 0.5 ms after two seconds of silence (a few percent of a core when idle).
    """

    def __init__(self, backend: str, query: str | None, callback: InputCallback, client_name: str,
                 local_name: str) -> None:
        InputPort.__init__(self, local_name, callback)
        self.backend, self.query, self.target = backend, query, None
        self.client_name, self.local_name = client_name, local_name
        self._midi = None
        self._reader: threading.Thread | None = None
        self._reading = threading.Event()

    def _open(self) -> None:
        _open_rtmidi(self, "MidiIn")
        self._configure()
        self._reading.set()
        self._reader = threading.Thread(target=self._read, name=f"companion-in-{self.local_name}", daemon=True)
        self._reader.start()

    def _configure(self) -> None:
        # Clock is wanted; SysEx is not used, so rtmidi drops it instead of buffering it.
        self._midi.ignore_types(sysex=True, timing=False, active_sense=True)

    def _read(self) -> None:
        """Our reader thread: take every queued message, stamp it, hand it over; nothing else."""
        try_realtime(READER_PRIORITY)
        last_ns = 0
        while self._reading.is_set():
            midi = self._midi  # close() joins this thread before it closes the port
            event = midi.get_message() if midi is not None else None
            if event is None:
                idle = time.monotonic_ns() - last_ns > IDLE_AFTER_NS
                time.sleep(POLL_IDLE_S if idle else POLL_INTERVAL_S)
                continue
            last_ns = time.monotonic_ns()
            self.callback(event[0], last_ns)

    def _close(self) -> None:
        self._reading.clear()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=1.0)
        self._reader = None
        _close_rtmidi(self)


class RtMidiOutput(_RtMidiMixin, OutputPort):
    """An rtmidi output."""

    def __init__(self, backend: str, query: str | None, client_name: str, local_name: str) -> None:
        OutputPort.__init__(self, local_name)
        self.backend, self.query, self.target = backend, query, None
        self.client_name, self.local_name = client_name, local_name
        self._midi = None

    def _open(self) -> None:
        _open_rtmidi(self, "MidiOut")

    def _send(self, data: Sequence[int]) -> None:
        self._midi.send_message(data)

    def _close(self) -> None:
        _close_rtmidi(self)


def open_input(backend: str, *, port: str | None, callback: InputCallback, client_name: str = "companion",
               virtual_name: str = "Companion In", frame_stamps: bool = False) -> InputPort:
    """Open a virtual input (`port=None`) or connect to the first port whose name contains `port`.

    `frame_stamps`: on our JACK client, each message is stamped at its frame (the period's start on the monotonic
    clock plus its offset: the map the timed output writes by) rather than when its period began; other backends
    stamp on arrival either way."""
    chosen = pick_backend(backend) if backend == "auto" else _check_backend(backend)
    if chosen == "jack" and _jack_shim():
        from companion.midi.jack import JackInput

        midi_in: InputPort = JackInput(port, callback, client_name, virtual_name, frame_stamps)
    else:
        midi_in = RtMidiInput(chosen, port, callback, client_name, virtual_name)
    midi_in.open()
    return midi_in


def open_output(backend: str, *, port: str | None, client_name: str = "companion",
                virtual_name: str = "Companion Out") -> OutputPort:
    """Open a virtual output (`port=None`) or connect to the first port whose name contains `port`."""
    chosen = pick_backend(backend) if backend == "auto" else _check_backend(backend)
    if chosen == "jack" and _jack_shim():
        from companion.midi.jack import JackOutput

        midi_out: OutputPort = JackOutput(port, client_name, virtual_name)
    else:
        midi_out = RtMidiOutput(chosen, port, client_name, virtual_name)
    midi_out.open()
    return midi_out


def _jack_shim() -> bool:
    """JACK ports go through our own client (companion/midi/jack.py) where its shim is built."""
    from companion.midi.jack_shim import available

    return available()[0]


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise PortError(f"unknown MIDI backend {backend!r}: choose one of auto, {', '.join(BACKENDS)}")
    return backend


# --- port loss and return -------------------------------------------------------------------------


@dataclass(frozen=True)
class PortEvent:
    """A named connection was lost ("lost") or re-made ("restored"); `text` is ready for the log/UI."""

    kind: str
    port: str  # our local port name, e.g. "Companion In"
    target: str  # the port we were connected to
    text: str


class PortWatcher:
    """Call `check()` about once a second: reports named connections that vanish, re-opens them on return.

    Virtual ports live as long as we do, except on a JACK server that goes away: every port of our own JACK
    client is watched for that, and re-opened (named ones reconnected) when JACK is back.
    """

    def __init__(self, on_event: Callable[[PortEvent], None]) -> None:
        self._on_event = on_event
        self._ports: list[Any] = []
        self._lost: set[int] = set()
        self._server_ports: list[Any] = []
        self._server_lost: set[int] = set()

    def watch(self, port: Any) -> None:
        if port.query is not None:
            self._ports.append(port)
        if hasattr(port, "server_gone"):
            self._server_ports.append(port)

    def lost(self) -> list[str]:
        """Local names of ports whose connection is currently lost."""
        return list(dict.fromkeys(p.local_name for p in [*self._ports, *self._server_ports]
                                  if id(p) in self._lost or id(p) in self._server_lost))

    def _check_server(self) -> list[PortEvent]:
        events: list[PortEvent] = []
        for port in self._server_ports:
            key = id(port)
            if port.closed:
                continue
            if port.server_gone() and not port.revive():  # the first port of a client re-opens them all
                if key not in self._server_lost:
                    self._server_lost.add(key)
                    events.append(PortEvent("lost", port.local_name, "JACK", (
                        f"the JACK server went away: {port.local_name} is gone until JACK is back "
                        "(Companion re-opens it by itself; nothing sounds meanwhile)")))
            elif key in self._server_lost:
                self._server_lost.discard(key)
                if port.query is not None:
                    port.reconnect()
                events.append(PortEvent("restored", port.local_name, "JACK", (
                    f"JACK is back: {port.local_name} re-opened"
                    + (f" and connected to {port.target!r}" if port.query is not None else "; connect it again"))))
        return events

    def check(self) -> list[PortEvent]:
        events = self._check_server()
        for port in self._ports:
            if port.closed or id(port) in self._server_lost:
                continue
            names = port.available_ports()
            key = id(port)
            if key not in self._lost:
                if port.target not in names:
                    self._lost.add(key)
                    events.append(PortEvent(
                        "lost", port.local_name, port.target or "",
                        f"MIDI port {port.target!r} ({port.local_name}) disappeared; "
                        f"waiting for a port matching {port.query!r} to come back",
                    ))
            elif any(port.query.lower() in n.lower() for n in names if port.query) and port.reconnect():
                self._lost.discard(key)
                events.append(PortEvent(
                    "restored", port.local_name, port.target or "",
                    f"MIDI port {port.target!r} is back; {port.local_name} reconnected",
                ))
        for event in events:
            self._on_event(event)
        return events
