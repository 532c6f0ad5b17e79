"""The real-time process's door for a UI: a local socket where a UI attaches, reads pictures and posts intents.

The seam is the one the Textual app always used (`snapshot`, `post_intent`, `inject`, `add_log_listener`),
carried as `wire` messages over a Unix socket, so the app runs in a process of its own: its drawing never holds
this process's interpreter lock, and a UI that crashes or is closed only detaches (the music goes on). A UI may
attach again (`companion attach`). The server's threads run at our lowest real-time rank: a normal-priority
thread preempted while it holds the lock is what made notes late (`companion bench inversion`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from companion.core.engine import ChangeSettings, PanicIntent, Regenerate, SetMode, StorePhrase
from companion.errors import CompanionError
from companion.live.intents import ChoosePorts, Learn, LoadPreset, SetRecording
from companion.midi.realtime import HARMONY_PRIORITY, try_realtime
from companion.wire import MAX_LINE_BYTES, WireError, decode, encode, jsonable

log = logging.getLogger("companion")

INTENTS: dict[str, type] = {cls.__name__: cls for cls in (SetMode, ChangeSettings, PanicIntent, Regenerate, StorePhrase,
                                                          ChoosePorts, Learn, LoadPreset, SetRecording)}
SERVER_PRIORITY = HARMONY_PRIORITY


def default_socket() -> Path:
    """Where `companion run` listens and `companion attach` looks: a folder of this user's own."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    return base / f"companion-{os.getuid() if hasattr(os, 'getuid') else 'user'}" / "session.sock"


def intent_fields(intent: object) -> dict[str, Any]:
    """An intent as the UI sends it: its class name and its fields."""
    name = type(intent).__name__
    if name not in INTENTS:
        raise WireError(f"intent {name} cannot be sent to the real-time process")
    return {"kind": name, "fields": jsonable(dataclasses.asdict(intent))}  # type: ignore[call-overload]


def intent_from(message: dict[str, Any]) -> object:
    """The intent back, checked: a known kind with exactly its fields (lists as the tuples settings hold)."""
    kind, fields = message.get("kind"), message.get("fields")
    if kind not in INTENTS or not isinstance(fields, dict):
        raise WireError(f"intent: unknown kind {kind!r} (known: {', '.join(INTENTS)})")
    cls = INTENTS[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    if not set(fields) <= names:
        raise WireError(f"intent {kind}: fields {sorted(fields)}, expected some of {sorted(names)}")
    try:
        return cls(**{k: _tuples(v) for k, v in fields.items()})
    except (TypeError, ValueError) as err:
        raise WireError(f"intent {kind}: {err}") from None


def _tuples(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


class SessionServer:
    """Serves one runtime to the UIs that attach; `close` detaches them all (the runtime is not its to stop)."""

    def __init__(self, runtime: Any, path: Path | None = None) -> None:
        self.runtime = runtime
        self.path = path or default_socket()
        self.attached = 0  # UIs attached now
        self._clients: list[_Client] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._socket = _listen(self.path)
        runtime.add_log_listener(self._on_log)
        threading.Thread(target=self._accept, name="companion-session-accept", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        try:
            self._socket.close()
        finally:
            with self._lock:
                clients, self._clients = self._clients, []
            for client in clients:
                client.close()
            self.path.unlink(missing_ok=True)

    def _accept(self) -> None:
        try_realtime(SERVER_PRIORITY)
        while not self._closed.is_set():
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return  # closed
            client = _Client(conn)
            with self._lock:
                self._clients.append(client)
                self.attached = len(self._clients)
            self.runtime.log("info", "a UI attached")
            threading.Thread(target=self._serve, args=(client,), name="companion-session-client",
                             daemon=True).start()

    def _serve(self, client: _Client) -> None:
        try_realtime(SERVER_PRIORITY)  # building a picture holds the lock: never preempted while it does
        try:
            for line in client.lines():
                try:
                    self._handle(client, decode(line))
                except (WireError, CompanionError) as err:
                    client.send("refused", text=err.message)
        finally:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)
                self.attached = len(self._clients)
            client.close()
            if not self._closed.is_set():
                self.runtime.log("info", "the UI detached; playing on (companion attach brings it back)")

    def _handle(self, client: _Client, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "snapshot":
            client.send("picture", snapshot=jsonable(self.runtime.snapshot()))
        elif kind == "intent":
            self.runtime.post_intent(intent_from(message["intent"]))
        elif kind == "inject":
            data = message["data"]
            if not (1 <= len(data) <= 3 and all(isinstance(b, int) and 0 <= b <= 255 for b in data)):
                raise WireError(f"inject: one MIDI message of 1-3 bytes expected, got {data!r:.40}")
            self.runtime.inject(data)
        else:
            raise WireError(f"{kind}: not a message a UI sends")

    def _on_log(self, level: str, text: str) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.send("log", level=level, text=text)


class _Client:
    """One attached UI: what it says is read by its serving thread; what it is sent goes through an outbox and a
    writer thread of its own, so a UI that stops reading never blocks the thread that logs or answers."""

    OUTBOX = 1000  # messages; beyond that a stalled UI loses log lines, never the session's time

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._outbox: queue.Queue[bytes | None] = queue.Queue(self.OUTBOX)
        threading.Thread(target=self._write, name="companion-session-writer", daemon=True).start()

    def lines(self) -> Iterator[bytes]:
        """What the UI sends, a line at a time, until it hangs up or the session closes the connection."""
        with self._conn.makefile("rb") as stream:
            while True:
                try:
                    line = stream.readline(MAX_LINE_BYTES + 1)
                except OSError:  # closed under the reader (the session is closing): the UI is gone
                    return
                if not line:
                    return
                yield line

    def send(self, kind: str, **fields: Any) -> None:
        try:
            self._outbox.put_nowait(encode(kind, **fields))
        except queue.Full:
            pass

    def _write(self) -> None:
        try_realtime(SERVER_PRIORITY)
        while (data := self._outbox.get()) is not None:
            try:
                self._conn.sendall(data)
            except OSError:
                return  # the UI went away: its reader ends the connection

    def close(self) -> None:
        try:
            self._outbox.put_nowait(None)
        except queue.Full:
            pass
        try:
            self._conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._conn.close()


def _listen(path: Path) -> socket.socket:
    """A listening socket at `path`; a stale one (its session gone) is replaced, a live one is an error."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)  # nobody listens: a session that ended without cleaning up
        else:
            raise CompanionError(f"another Companion session is listening at {path}; attach to it with "
                                 "`companion attach`, or give this one its own with --control PATH")
        finally:
            probe.close()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o600)
    server.listen(4)
    return server
