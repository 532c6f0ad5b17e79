"""JACK ports through one JACK client of our own: `companion:Companion In` and `companion:Companion Out`.

rtmidi makes a JACK client per port (`companion` and `companion-01`), and its input has to be polled. Here the
C shim `_jackmidi.c` (built with the package, loaded with ctypes) runs one client; its real-time `process`
moves bytes between the ports and lock-free ring buffers and wakes an input's reader thread with a semaphore,
so input is handed over the moment JACK delivers it. The non-real-time calls (listing ports, connecting) go
to libjack through ctypes. Where the shim is not built, `available()` says why and rtmidi's JACK is used.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any

from companion.errors import PortError
from companion.midi.backends import _WHY_NO_JACK, find_port
from companion.midi.jack_shim import FORCE_RTMIDI_ENV, available, load, why_not  # noqa: F401  (re-exported)
from companion.midi.port_base import InputCallback, InputPort, OutputPort
from companion.midi.realtime import READER_PRIORITY, native_threads, note_jack_client, try_realtime

MIDI_TYPE = b"8 bit raw midi"
PORT_IS_INPUT, PORT_IS_OUTPUT = 0x1, 0x2
WAIT_US = 200_000  # a reader wakes at least this often to see whether its port is closing
READ_CAPACITY = 4096

class JackClient:
    """One JACK client shared by every port opened with the same client name; closed with its last port."""

    _clients: dict[str, JackClient] = {}
    _registry_lock = threading.Lock()

    def __init__(self, requested: str) -> None:
        libs = load()
        if libs is None:
            raise PortError(f"JACK ports through Companion's own client are unavailable: {why_not()}")
        self._shim, self._jack = libs
        self.requested = requested
        handle, why = self._new_handle()
        if not handle:
            raise PortError(f"cannot open the JACK client {requested!r}: {_WHY_NO_JACK} ({why})")
        self._adopt(handle)
        self.users = 0
        self.lock = threading.Lock()
        self._names: dict[int, tuple[str, str]] = {}  # slot -> (the name asked for, the name it has)
        self._inputs: set[int] = set()
        self._frame_stamped: set[int] = set()  # inputs stamped at their frame (kept when JACK comes back)
        self._abandoned: list[Any] = []  # clients of a JACK that went away (readers may still hold them)

    def _new_handle(self) -> tuple[Any, str]:
        """A new client on the server: its handle (None if there is no server) and libjack's reason."""
        error = ctypes.create_string_buffer(256)
        before = native_threads()
        handle = self._shim.cj_open(self.requested.encode(), error, len(error))
        if handle:
            note_jack_client(before)  # its process thread now bounds our threads' real-time priority
        return handle, error.value.decode()

    def _adopt(self, handle: Any) -> None:
        self._handle = handle
        self._client = self._shim.cj_client(handle)
        self.name = self._jack.jack_get_client_name(self._client).decode()  # JACK renames a taken name

    @classmethod
    def acquire(cls, name: str) -> JackClient:
        with cls._registry_lock:
            client = cls._clients.get(name)
            if client is None:
                client = cls._clients[name] = JackClient(name)
            client.users += 1
            return client

    def release(self) -> None:
        with self._registry_lock:
            self.users -= 1
            if self.users > 0:
                return
            self._clients.pop(self.requested, None)
        if self._handle not in self._abandoned:  # an abandoned one was closed already (JACK went away)
            self._shim.cj_close(self._handle)

    def ports(self, flags: int) -> list[str]:
        """MIDI ports of other clients with these flags (PORT_IS_OUTPUT: ones we can listen to)."""
        found = self._jack.jack_get_ports(self._client, None, MIDI_TYPE, flags)
        if not found:
            return []
        names: list[str] = []
        try:
            for index in range(4096):
                name = found[index]
                if name is None:
                    break
                names.append(name.decode(errors="replace"))
        finally:
            self._jack.jack_free(ctypes.cast(found, ctypes.c_void_p))
        return [n for n in names if not n.startswith(self.name + ":")]

    def add_port(self, name: str, is_input: bool) -> int:
        """Register a port. While a port of ours still holds the name (ports chosen live open before the old
        ones close), the new one waits under a stand-in name and takes its own when the holder goes."""
        with self.lock:
            held = {actual for _, actual in self._names.values()}
            candidates = [name] + ([f"{name} ({k})" for k in range(2, 10)] if name in held else [])
            for actual in candidates:
                if actual in held:
                    continue
                slot = self._shim.cj_add_port(self._handle, actual.encode(), 1 if is_input else 0)
                if slot >= 0:
                    self._names[slot] = (name, actual)
                    if is_input:
                        self._inputs.add(slot)
                    return slot
        raise PortError(f"cannot open the JACK port {self.name}:{name}: the name is taken (is another "
                        "Companion running? close it first) or the client has too many ports")

    def remove_port(self, slot: int) -> None:
        with self.lock:
            self._shim.cj_remove_port(self._handle, slot)
            wanted, actual = self._names.pop(slot, ("", ""))
            self._inputs.discard(slot)
            self._frame_stamped.discard(slot)
            waiting = [s for s, (w, a) in self._names.items() if w == wanted and a != wanted]
            rename = getattr(self._jack, "jack_port_rename", None)
            if actual == wanted and waiting and rename is not None:
                port = self._shim.cj_port(self._handle, waiting[0])
                if rename(self._client, port, wanted.encode()) == 0:
                    self._names[waiting[0]] = (wanted, wanted)

    def alive(self) -> bool:
        """False once the JACK server has gone away (stopped, crashed, restarted)."""
        return not self._shim.cj_shut_down(self._handle)

    def revive(self) -> bool:
        """After the server went away: a new client of the same name with the same ports, if JACK is back."""
        with self.lock:
            if self.alive():
                return True
            if self._handle not in self._abandoned:
                # Let go of the dead client first: while it is open, libjack keeps the old server's state
                # and a new client would open against that.
                self._shim.cj_abandon(self._handle)
                self._abandoned.append(self._handle)
            handle, _ = self._new_handle()
            if not handle:
                return False
            for slot, (_, actual) in sorted(self._names.items()):
                if self._shim.cj_add_port_at(handle, slot, actual.encode(), 1 if slot in self._inputs else 0) < 0:
                    self._shim.cj_close(handle)
                    return False
                if slot in self._frame_stamped:
                    self._shim.cj_set_frame_stamps(handle, slot, 1)
            self._adopt(handle)
            return True

    def stamp_by_frame(self, slot: int) -> None:
        """This input's messages get the time of their frame, not of the period's start (see JackInput)."""
        with self.lock:
            self._frame_stamped.add(slot)
            self._shim.cj_set_frame_stamps(self._handle, slot, 1)

    def missed_cycles(self, after_output: bool = False) -> int:
        """Cycles JACK ran without this client since it (re)opened; `after_output`: those right after a cycle that
        sent something (a DAW reading our output on a feedback connection heard that again)."""
        return int(self._shim.cj_missed_cycles(self._handle, 1 if after_output else 0))

    def full_name(self, slot: int) -> str:
        return self._jack.jack_port_name(self._shim.cj_port(self._handle, slot)).decode()

    def connect(self, source: str, destination: str) -> bool:
        result = self._jack.jack_connect(self._client, source.encode(), destination.encode())
        return result in (0, 17)  # 17 (EEXIST): already connected

    @property
    def shim(self) -> Any:
        return self._shim

    @property
    def handle(self) -> Any:
        return self._handle


def missed_cycles() -> tuple[int, int]:
    """Over our open JACK clients: (cycles JACK ran without them, those right after a cycle that sent output)."""
    with JackClient._registry_lock:
        clients = list(JackClient._clients.values())
    return (sum(client.missed_cycles() for client in clients),
            sum(client.missed_cycles(after_output=True) for client in clients))


class _JackPortMixin:
    """Open, name and (re)connect one port of the shared client; `query` None means a virtual port."""

    backend = "jack"
    direction: str
    query: str | None
    target: str | None
    client_name: str
    local_name: str
    _client: JackClient | None
    _slot: int
    _lock: threading.RLock

    def _open_port(self) -> None:
        self._client = JackClient.acquire(self.client_name)
        try:
            target = self._matching_target() if self.query is not None else None
            self._slot = self._client.add_port(self.local_name, self.direction == "input")
            if target is not None and not self._link(target):
                self._client.remove_port(self._slot)
                raise PortError(f"cannot connect {self.local_name!r} to the JACK port {target!r}")
        except PortError:
            self._client.release()
            self._client = None
            raise

    def _matching_target(self) -> str:
        """The first port of another client that matches the query (a PortError that lists them if none)."""
        assert self.query is not None
        names = self.available_ports()
        return names[find_port(names, self.query, self.direction, "jack")]

    def _link(self, target: str) -> bool:
        assert self._client is not None
        ours = self._client.full_name(self._slot)
        linked = (self._client.connect(target, ours) if self.direction == "input"
                  else self._client.connect(ours, target))
        if linked:
            self.target = target
        return linked

    def server_gone(self) -> bool:
        """The JACK server this port lived on has gone away."""
        client = self._client
        return client is not None and not client.alive()

    def revive(self) -> bool:
        """Re-open this port's client (and every port of it) once JACK is back; True when it is."""
        client = self._client
        return client is not None and client.revive()

    def _close_port(self) -> None:
        if self._client is not None:
            self._client.remove_port(self._slot)
            self._client.release()
            self._client = None

    def available_ports(self) -> list[str]:
        """Ports of other clients this port could connect to."""
        client = self._client
        if client is None:
            return []
        return client.ports(PORT_IS_OUTPUT if self.direction == "input" else PORT_IS_INPUT)

    def reconnect(self) -> bool:
        """Connect again to a port matching the query (the watcher calls this when one is back)."""
        with self._lock:
            if self.query is None or self._client is None:
                return False
            try:
                return self._link(self._matching_target())
            except PortError:
                return False


class JackInput(_JackPortMixin, InputPort):
    """A JACK input of our client; a reader thread of ours wakes when JACK hands over messages."""

    def __init__(self, query: str | None, callback: InputCallback, client_name: str, local_name: str,
                 frame_stamps: bool = False) -> None:
        InputPort.__init__(self, local_name, callback)
        self.query, self.target, self.client_name, self.local_name = query, None, client_name, local_name
        self.frame_stamps = frame_stamps
        self._client = None
        self._slot = -1
        self._reader: threading.Thread | None = None
        self._reading = threading.Event()

    def _open(self) -> None:
        self._open_port()
        if self.frame_stamps and self._client is not None:
            self._client.stamp_by_frame(self._slot)  # before the reader starts: every message stamped alike
        self._reading.set()
        self._reader = threading.Thread(target=self._read, name=f"companion-in-{self.local_name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try_realtime(READER_PRIORITY)
        client = self._client
        assert client is not None
        shim, slot = client.shim, self._slot
        buffer = (ctypes.c_ubyte * READ_CAPACITY)()
        stamp = ctypes.c_uint64()
        while self._reading.is_set():
            handle = client.handle  # a new one after JACK came back
            if not shim.cj_wait(handle, slot, WAIT_US):  # the interpreter lock is free while we wait
                continue
            while self._reading.is_set():
                size = shim.cj_read(handle, slot, buffer, READ_CAPACITY, ctypes.byref(stamp))
                if size == 0:
                    break
                if size > 0:
                    self.callback(list(buffer[:size]), stamp.value)

    def _close(self) -> None:
        self._reading.clear()
        client = self._client
        if client is not None:
            client.remove_port(self._slot)  # wakes the reader
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=1.0)
        self._reader = None
        if client is not None:
            client.release()
            self._client = None


class JackOutput(_JackPortMixin, OutputPort):
    """A JACK output of our client: `send` goes out in JACK's next period; `send_at` at the frame its due time
    falls on, written by the C client's process callback (sample-accurate, whenever Python ran)."""

    timed = True

    def __init__(self, query: str | None, client_name: str, local_name: str) -> None:
        OutputPort.__init__(self, local_name)
        self.query, self.target, self.client_name, self.local_name = query, None, client_name, local_name
        self._client = None
        self._slot = -1
        self.dropped = 0  # messages sent while JACK was away

    def _open(self) -> None:
        self._open_port()

    def _send(self, data: Sequence[int]) -> None:
        self._send_at(data, 0)

    def _send_at(self, data: Sequence[int], due_ns: int) -> None:
        client = self._client
        assert client is not None
        payload = bytes(data)
        result = client.shim.cj_send_at(client.handle, self._slot, payload, len(payload), max(0, due_ns))
        if result == -3:
            raise PortError(f"cannot send {len(payload)} bytes to {self.name!r} in one message (SysEx is not sent)")
        if result == -2:  # JACK has gone away: nothing can sound; the watcher says so and re-opens the port
            self.dropped += 1
            return
        if result == -1:
            raise PortError(f"cannot send to {self.name!r}: JACK has not taken messages for a while (stalled?)")

    def late_writes(self) -> tuple[int, int]:
        """(timed messages written after their frame had passed, the worst in ns) since the port opened."""
        client = self._client
        if client is None or self._slot < 0:
            return 0, 0
        worst = ctypes.c_uint64(0)
        count = client.shim.cj_output_late(client.handle, self._slot, ctypes.byref(worst))
        return int(count), int(worst.value)

    def _close(self) -> None:
        self._close_port()
