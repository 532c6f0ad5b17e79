"""The session's log: each line kept for the UI's snapshot and handed to listeners (the log pane, an attached UI)
at once; written to Python's logging (a terminal, a pipe, a file) only by the supervisor thread, so no timing
thread (engine, harmony, generator) ever waits on a slow terminal or a full pipe."""

from __future__ import annotations

import logging
import queue
from collections import deque
from collections.abc import Callable

log = logging.getLogger("companion")

LEVELS = ("info", "warning", "error", "debug")


class RuntimeLog:
    def __init__(self, keep: int = 200) -> None:
        self.lines: deque[tuple[str, str]] = deque(maxlen=keep)
        self._listeners: list[Callable[[str, str], None]] = []
        self._unwritten: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()

    def add_listener(self, listener: Callable[[str, str], None]) -> None:
        """Told every line on the thread that logs it: it must not block (the UI's and the session's queue it)."""
        self._listeners.append(listener)

    def __call__(self, level: str, text: str) -> None:
        self.lines.append((level, text))
        self._unwritten.put((level, text))
        for listener in self._listeners:
            listener(level, text)

    def write_pending(self) -> None:
        """The supervisor's part (and close's): the lines logged since, to Python's logging, in their order."""
        while True:
            try:
                level, text = self._unwritten.get_nowait()
            except queue.Empty:
                return
            getattr(log, level if level in LEVELS else "info")(text)
