"""A UI's side of the session socket: `RemoteRuntime` offers the Textual app the runtime's seam from another process.

`close` only detaches: the real-time process plays on. `lost` says when the session went away (the app then says
so and quits).
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from companion.errors import CompanionError
from companion.live.session_server import default_socket, intent_fields
from companion.wire import MAX_LINE_BYTES, WireError, decode, encode

PICTURE_TIMEOUT_S = 2.0


class SessionError(CompanionError):
    """No session to attach to, or it went away."""

    title = "Session error"


class RemoteRuntime:
    """The seam the Textual app uses (`snapshot`, `post_intent`, `inject`, `add_log_listener`, `start`, `close`)."""

    error: BaseException | None = None

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_socket()
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._conn.connect(str(self.path))
        except OSError as err:
            self._conn.close()
            raise SessionError(f"no Companion session at {self.path} ({err.strerror}); start one with "
                               "`companion run --headless` (or give its --control PATH)") from None
        self._send_lock = threading.Lock()
        self._pictures: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._listeners: list[Callable[[str, str], None]] = []
        self._last: dict[str, Any] = {}
        self.lost: str | None = None
        self.refused: list[str] = []
        threading.Thread(target=self._read, name="companion-session-reader", daemon=True).start()

    # --- the runtime's seam ------------------------------------------------------------------------------

    def start(self) -> RemoteRuntime:
        return self  # the real-time process is running already

    def close(self) -> None:
        """Detach; the session plays on."""
        try:
            self._conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._conn.close()

    @property
    def closed(self) -> bool:
        return self.lost is not None

    def snapshot(self) -> dict[str, Any]:
        """The session's picture (the last one, marked stale, if the session does not answer in time)."""
        while not self._pictures.empty():  # a late answer to an earlier ask
            self._pictures.get_nowait()
        if self._send("snapshot"):
            try:
                picture = self._pictures.get(timeout=PICTURE_TIMEOUT_S)
            except queue.Empty:
                picture = None
            if picture is not None:
                if isinstance(picture.get("cc_mappings"), list):  # the preset screen saves them as they were
                    picture["cc_mappings"] = _mappings(picture["cc_mappings"])
                self._last = picture
                return picture
        return {**self._last, "session_lost": self.lost or "the session did not answer"}

    def post_intent(self, intent: object) -> None:
        self._send("intent", intent=intent_fields(intent))

    def inject(self, data: list[int]) -> None:
        self._send("inject", data=[int(b) for b in data])

    def add_log_listener(self, listener: Callable[[str, str], None]) -> None:
        self._listeners.append(listener)

    # --- the socket ------------------------------------------------------------------------------------------

    def _send(self, kind: str, **fields: Any) -> bool:
        data = encode(kind, **fields)
        with self._send_lock:
            try:
                self._conn.sendall(data)
            except OSError as err:
                self.lost = self.lost or f"the session went away ({err.strerror})"
                return False
        return True

    def _read(self) -> None:
        why = "the session ended"
        try:
            with self._conn.makefile("rb") as stream:
                while line := stream.readline(MAX_LINE_BYTES + 1):
                    message = decode(line)
                    if message["type"] == "picture":
                        self._pictures.put(message["snapshot"])
                    elif message["type"] == "log":
                        for listener in self._listeners:
                            listener(message["level"], message["text"])
                    elif message["type"] == "refused":
                        self.refused.append(message["text"])
                        for listener in self._listeners:
                            listener("warning", f"the session refused a message: {message['text']}")
        except WireError as err:
            why = f"the session sent a message that is not ours ({err.message})"
        except (OSError, ValueError):
            pass
        self.lost = self.lost or why
        self._pictures.put(None)


def _mappings(raw: list[Any]) -> tuple[Any, ...] | None:
    from companion.core.control import CCMapping

    try:
        return tuple(CCMapping(**m) for m in raw)
    except (TypeError, ValueError):
        return None
