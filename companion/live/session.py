"""The real-time process's main loop: run the runtime, serve UIs on the session socket, keep playing without one.

`companion run` is this process with its terminal UI in a child process (`companion attach`) that it starts; with
`--headless` it starts none. Either way a UI can attach later. Quitting the UI it started ends the session as
before (all notes off); a UI that crashes or is killed only detaches: the log says so and the music goes on.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from companion.errors import CompanionError
from companion.live.session_server import SessionServer

log = logging.getLogger("companion")
WAIT_S = 0.2


def run_session(runtime: Any, stop: threading.Event, *, control: Path | None = None, with_ui: bool = False) -> int:
    """Run until `stop` is set (the caller's `StopOnSignal`: SIGINT, SIGTERM, SIGHUP or another ending signal), or
    until the UI it started quits; then all notes off. 0, or 1 if a thread failed."""
    server: SessionServer | None = None
    ui: subprocess.Popen | None = None
    quiet = _TerminalLog()
    try:
        runtime.start()
        try:
            server = SessionServer(runtime, control)
        except (CompanionError, OSError) as err:
            runtime.log("warning", f"no UI can attach to this session: {err}")
        if with_ui and server is not None:
            quiet.hold()  # the UI owns the terminal now; its log pane shows what this process says
            ui = subprocess.Popen([sys.executable, "-m", "companion", "attach", "--control", str(server.path)])
        else:
            log.info("running headless; press Ctrl-C to stop%s",
                     f"; `companion attach --control {server.path}` shows the UI" if server else "")
        while not stop.wait(WAIT_S) and not runtime.closed:
            if ui is not None and (code := ui.poll()) is not None:
                ui = None
                quiet.release()
                if code == 0:
                    break  # the player quit the UI: the session ends with it, as it always has
                runtime.log("warning", f"the UI stopped (exit {code}); the music goes on. Attach again with "
                                       f"`companion attach --control {server.path}`, Ctrl-C stops")
    finally:
        if ui is not None and ui.poll() is None:
            ui.terminate()
            ui.wait(timeout=5)
        quiet.release()
        if server is not None:
            server.close()
        runtime.close()
        quiet.close()
    log.info("stopped; all notes off")
    return 0 if runtime.error is None and not runtime.takes.failed_saves else 1  # a lost take is a failure


class _TerminalLog:
    """The log's terminal output, written by a thread of its own for the session: a timing thread that logs (an
    answer begins, a note came late) only queues the line, and never waits on a slow terminal (a remote shell, a
    scrolled-back window). While the UI child draws on the terminal the lines are held back (its log pane has them).
    """

    def __init__(self) -> None:
        root = logging.getLogger()
        self._handlers = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                          and getattr(h, "stream", None) in (sys.stderr, sys.stdout)]
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._door = logging.handlers.QueueHandler(self._queue)
        for handler in self._handlers:
            root.removeHandler(handler)
        root.addHandler(self._door)
        self._writer = logging.handlers.QueueListener(self._queue, *self._handlers, respect_handler_level=True)
        self._writer.start()

    def hold(self) -> None:
        self._door.setLevel(logging.CRITICAL + 1)  # decided as a line is logged, not as it is written

    def release(self) -> None:
        self._door.setLevel(logging.NOTSET)

    def close(self) -> None:
        """Write what is queued, then log straight to the terminal again."""
        self.release()
        self._writer.stop()
        root = logging.getLogger()
        root.removeHandler(self._door)
        for handler in self._handlers:
            root.addHandler(handler)
