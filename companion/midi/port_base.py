"""The port life cycle every backend shares (mido-like: the base owns validation, locking, open and close)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from companion.errors import PortError

InputCallback = Callable[[list[int], int], None]
"""Called on the MIDI thread with (data, time_ns) where time_ns is `time.monotonic_ns()` at arrival."""


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
    """`send(data)` is thread-safe. A `timed` port also places `send_at(data, due_ns)` at its due time (monotonic
    ns); on the others `send_at` sends at once, so only a caller that checked `timed` hands messages over early."""

    direction = "output"
    timed = False

    def _send(self, data: Sequence[int]) -> None:
        raise NotImplementedError

    def _send_at(self, data: Sequence[int], due_ns: int) -> None:
        self._send(data)

    def send(self, data: Sequence[int]) -> None:
        self.send_at(data, 0)

    def send_at(self, data: Sequence[int], due_ns: int) -> None:
        with self._lock:
            if self.closed:
                raise PortError(f"cannot send to {self.name!r}: the port is closed")
            self._send_at(data, due_ns)
