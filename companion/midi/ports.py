"""MIDI ports: virtual or named ports (ALSA, JACK, CoreMIDI, WinMM), loopback fakes, reconnection."""

from __future__ import annotations

import difflib
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from companion.errors import PortError
from companion.midi.clock import try_realtime

BACKENDS = ("alsa", "jack", "coremidi", "winmm")
POLL_INTERVAL_S = 0.0002  # an input's reader thread looks at rtmidi's queue this often when it is empty
READER_REALTIME_PRIORITY = 6  # above the engine's (5): input is stamped as it arrives
InputCallback = Callable[[list[int], int], None]
"""Called on the MIDI thread with (data, time_ns) where time_ns is `time.monotonic_ns()` at arrival."""

_ALSA_SEQ_PATH = "/dev/snd/seq"
_WHY_NO_ALSA_SEQ = (
    f"the ALSA sequencer ({_ALSA_SEQ_PATH}) is missing: load it with `sudo modprobe snd-seq`, "
    "or start a JACK server and use --backend jack"
)
_WHY_NO_JACK = (
    "no JACK server is running: start one (`jackd -d alsa`, QjackCtl, or PipeWire's JACK), "
    "or use --backend alsa"
)
_WHY_WINMM = (
    "Windows MIDI cannot create virtual ports: install a loopback driver such as loopMIDI, create two ports "
    "(e.g. 'Companion In' and 'Companion Out'), and pass --in-port / --out-port"
)


def _rtmidi() -> Any:
    """Import rtmidi lazily so the loopback ports (demo, tests) work even where it does not load."""
    try:
        import rtmidi
    except ImportError as err:
        raise PortError(
            f"python-rtmidi could not be loaded ({err}); reinstall it with `pip install python-rtmidi`"
        ) from err
    return rtmidi


def _api(rtmidi: Any, backend: str) -> int:
    return {
        "alsa": rtmidi.API_LINUX_ALSA,
        "jack": rtmidi.API_UNIX_JACK,
        "coremidi": rtmidi.API_MACOSX_CORE,
        "winmm": rtmidi.API_WINDOWS_MM,
    }[backend]


@dataclass(frozen=True)
class BackendInfo:
    """What one backend can do on this machine right now."""

    name: str
    compiled: bool
    usable: bool
    virtual_ports: bool
    inputs: tuple[str, ...] = ()  # ports we can receive from (sources)
    outputs: tuple[str, ...] = ()  # ports we can send to (destinations)
    why: str = ""  # why it is unusable, or what is limited about it


def _probe(backend: str, compiled: set[int], rtmidi: Any) -> BackendInfo:
    api = _api(rtmidi, backend)
    if api not in compiled:
        return BackendInfo(backend, False, False, False, why=f"python-rtmidi was built without {backend}")
    if backend == "alsa" and not os.path.exists(_ALSA_SEQ_PATH):
        return BackendInfo(backend, True, False, False, why=_WHY_NO_ALSA_SEQ)
    try:
        midi_in = rtmidi.MidiIn(api, "companion-probe")
        midi_out = rtmidi.MidiOut(api, "companion-probe")
    except rtmidi.RtMidiError as err:
        why = _WHY_NO_JACK if backend == "jack" else f"{backend} failed to start: {err}"
        return BackendInfo(backend, True, False, False, why=why)
    try:
        inputs, outputs = tuple(midi_in.get_ports()), tuple(midi_out.get_ports())
    finally:
        midi_in.delete()
        midi_out.delete()
    virtual = backend != "winmm"
    return BackendInfo(backend, True, True, virtual, inputs, outputs, "" if virtual else _WHY_WINMM)


def list_backends() -> list[BackendInfo]:
    """Every backend with whether it is compiled in and usable now, and the ports it sees."""
    rtmidi = _rtmidi()
    compiled = set(rtmidi.get_compiled_api())
    return [_probe(name, compiled, rtmidi) for name in BACKENDS]


def pick_backend(name: str = "auto", infos: Sequence[BackendInfo] | None = None,
                 platform: str = sys.platform) -> str:
    """Resolve "auto" to the backend that works here (Linux: ALSA, else JACK); check a named one is usable."""
    if name != "auto" and name not in BACKENDS:
        raise PortError(f"unknown MIDI backend {name!r}: choose one of auto, {', '.join(BACKENDS)}")
    by_name = {info.name: info for info in (infos if infos is not None else list_backends())}
    if name != "auto":
        info = by_name[name]
        if not info.usable:
            raise PortError(f"MIDI backend {name} is not usable: {info.why}")
        return name
    if platform.startswith("linux"):
        preference = ["alsa", "jack"]
    elif platform == "darwin":
        preference = ["coremidi", "jack"]
    elif platform.startswith("win"):
        preference = ["winmm"]
    else:
        preference = list(BACKENDS)
    for candidate in preference:
        if by_name[candidate].usable:
            return candidate
    reasons = "; ".join(f"{c}: {by_name[c].why}" for c in preference)
    raise PortError(f"no usable MIDI backend on this machine ({reasons})")


def find_port(names: Sequence[str], wanted: str, direction: str, backend: str) -> int:
    """Index of the first port whose name contains `wanted` (any case), else a PortError that helps."""
    needle = wanted.lower()
    for index, name in enumerate(names):
        if needle in name.lower():
            return index
    seen = ", ".join(repr(n) for n in names) if names else "none"
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(needle, list(lowered), n=1, cutoff=0.3)
    hint = f" Did you mean {lowered[close[0]]!r}?" if close else ""
    flag = "--in-port" if direction == "input" else "--out-port"
    raise PortError(
        f"no MIDI {direction} port matching {wanted!r} on {backend}. Ports that exist: {seen}.{hint} "
        f"Pass part of one of these names to {flag}, or leave it out to open a virtual port."
    )


# --- the port life cycle (mido-like: the base owns validation, locking, open/close) ------------------


class BasePort:
    """Validation, locking and life cycle; a backend overrides `_open`, `_close` and (outputs) `_send`."""

    direction = "port"

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = True
        self._lock = threading.RLock()

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def open(self) -> None:
        with self._lock:
            if self.closed:
                self._open()
                self.closed = False

    def close(self) -> None:
        """Close the port; closing twice is harmless."""
        with self._lock:
            if not self.closed:
                self.closed = True
                self._close()

    def __enter__(self) -> BasePort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {self.direction} {self.name!r} {state}>"


class InputPort(BasePort):
    """Calls `callback(data, time_ns)` for every message that arrives."""

    direction = "input"

    def __init__(self, name: str, callback: InputCallback) -> None:
        if not callable(callback):
            raise TypeError(f"input port {name!r}: callback must be callable, got {callback!r}")
        super().__init__(name)
        self.callback = callback


class OutputPort(BasePort):
    """`send(data)` is thread-safe."""

    direction = "output"

    def _send(self, data: Sequence[int]) -> None:
        raise NotImplementedError

    def send(self, data: Sequence[int]) -> None:
        with self._lock:
            if self.closed:
                raise PortError(f"cannot send to {self.name!r}: the port is closed")
            self._send(data)


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
    try:
        port._midi = getattr(rtmidi, factory_name)(api, port.client_name)
    except rtmidi.RtMidiError as err:
        why = _WHY_NO_JACK if port.backend == "jack" else str(err)
        raise PortError(
            f"cannot open MIDI {port.direction} {port.local_name!r} on {port.backend}: {why}"
        ) from err
    try:
        port._connect(rtmidi)
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
    could crash the process (seen on JACK). Polling every 0.2 ms adds about 0.1 ms on average.
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
        try_realtime(READER_REALTIME_PRIORITY)
        while self._reading.is_set():
            with self._lock:
                event = self._midi.get_message() if self._midi is not None else None
            if event is None:
                time.sleep(POLL_INTERVAL_S)
                continue
            self.callback(event[0], time.monotonic_ns())

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
               virtual_name: str = "Companion In") -> RtMidiInput:
    """Open a virtual input (`port=None`) or connect to the first port whose name contains `port`."""
    chosen = pick_backend(backend) if backend == "auto" else _check_backend(backend)
    midi_in = RtMidiInput(chosen, port, callback, client_name, virtual_name)
    midi_in.open()
    return midi_in


def open_output(backend: str, *, port: str | None, client_name: str = "companion",
                virtual_name: str = "Companion Out") -> RtMidiOutput:
    """Open a virtual output (`port=None`) or connect to the first port whose name contains `port`."""
    chosen = pick_backend(backend) if backend == "auto" else _check_backend(backend)
    midi_out = RtMidiOutput(chosen, port, client_name, virtual_name)
    midi_out.open()
    return midi_out


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise PortError(f"unknown MIDI backend {backend!r}: choose one of auto, {', '.join(BACKENDS)}")
    return backend


# --- in-process loopback (demo, tests) ------------------------------------------------------------


class LoopbackInput(InputPort):
    """The receiving end of a loopback cable."""

    def __init__(self, cable: LoopbackPorts, callback: InputCallback) -> None:
        super().__init__(cable.name, callback)
        self._cable = cable

    def _open(self) -> None:
        self._cable._attach(self)

    def _close(self) -> None:
        self._cable._detach(self)


class LoopbackOutput(OutputPort):
    """The sending end of a loopback cable: `send` delivers to every open input, on the caller's thread."""

    def __init__(self, cable: LoopbackPorts) -> None:
        super().__init__(cable.name)
        self._cable = cable

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _send(self, data: Sequence[int]) -> None:
        now_ns = time.monotonic_ns()
        for midi_in in self._cable._inputs:
            midi_in.callback(list(data), now_ns)


class LoopbackPorts:
    """An in-process virtual cable named like a port: what its outputs send reaches its inputs' callbacks."""

    def __init__(self, name: str = "Loopback") -> None:
        self.name = name
        self._inputs: tuple[LoopbackInput, ...] = ()  # replaced, never mutated: senders iterate it unlocked
        self._lock = threading.Lock()

    def open_input(self, callback: InputCallback) -> LoopbackInput:
        midi_in = LoopbackInput(self, callback)
        midi_in.open()
        return midi_in

    def open_output(self) -> LoopbackOutput:
        midi_out = LoopbackOutput(self)
        midi_out.open()
        return midi_out

    def _attach(self, midi_in: LoopbackInput) -> None:
        with self._lock:
            self._inputs = (*self._inputs, midi_in)

    def _detach(self, midi_in: LoopbackInput) -> None:
        with self._lock:
            self._inputs = tuple(p for p in self._inputs if p is not midi_in)


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

    Virtual ports are not watched: they live as long as we do.
    """

    def __init__(self, on_event: Callable[[PortEvent], None]) -> None:
        self._on_event = on_event
        self._ports: list[RtMidiInput | RtMidiOutput] = []
        self._lost: set[int] = set()

    def watch(self, port: RtMidiInput | RtMidiOutput) -> None:
        if port.query is not None:
            self._ports.append(port)

    def lost(self) -> list[str]:
        """Local names of ports whose connection is currently lost."""
        return [p.local_name for p in self._ports if id(p) in self._lost]

    def check(self) -> list[PortEvent]:
        events: list[PortEvent] = []
        for port in self._ports:
            if port.closed:
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


def jack_period_ns(default_frames: int = 64, default_rate: int = 48000) -> int:
    """The JACK server's period (buffer size / sample rate), from jack_bufsize and jack_samplerate if present."""
    import shutil
    import subprocess

    frames, rate = default_frames, default_rate
    try:
        if shutil.which("jack_bufsize") and shutil.which("jack_samplerate"):
            def ask(tool: str) -> int:
                return int(subprocess.run([tool], capture_output=True, text=True, timeout=5).stdout.split()[-1])

            frames, rate = ask("jack_bufsize"), ask("jack_samplerate")
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        frames, rate = default_frames, default_rate
    return round(1e9 * frames / rate)


def format_backends(infos: Sequence[BackendInfo] | None = None) -> str:
    """`companion ports`: each backend, whether it works and can open virtual ports, and the ports it sees."""
    infos = list_backends() if infos is None else infos
    lines: list[str] = []
    for info in infos:
        if not info.compiled:
            state = "not available in this build"
        elif not info.usable:
            state = "not usable now"
        else:
            state = "usable, virtual ports" if info.virtual_ports else "usable, named ports only"
        lines.append(f"{info.name}: {state}")
        if info.why:
            lines.append(f"  why: {info.why}")
        if info.usable:
            lines.append("  ports you can listen to (--in-port): " + (", ".join(info.inputs) or "none"))
            lines.append("  ports you can play to (--out-port): " + (", ".join(info.outputs) or "none"))
    try:
        lines.append(f"auto picks: {pick_backend('auto', infos)}")
    except PortError as err:
        lines.append(f"auto picks nothing: {err.message}")
    return "\n".join(lines)
