"""The signals that end a session as Ctrl-C does (all notes off, then exit), for headless runs and the terminal UI.

Every signal whose default action ends the process is caught, except the ones a fault raises (SIGSEGV, SIGBUS,
SIGILL, SIGFPE, SIGSYS, SIGTRAP): a Python handler for those would return to the faulting instruction and hang.
SIGKILL and SIGSTOP cannot be caught at all; README.md says what the DAW is left with then. SIGPIPE is ignored
by Python already. A C abort() still ends the process (glibc re-raises SIGABRT once the handler returns); an
ABRT sent with `kill` is caught like the rest. A signal that already has a handler of someone else's (a profiler's
SIGPROF, faulthandler's SIGABRT) is left to it: only the default action, which would end the process with notes
sounding, is replaced.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

_NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGABRT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM",
          "SIGPROF", "SIGXCPU", "SIGXFSZ", "SIGPOLL", "SIGPWR", "SIGSTKFLT", "SIGBREAK")


def stop_signals(*, keyboard: bool = True) -> tuple[signal.Signals, ...]:
    """The catchable ending signals this platform has; `keyboard=False` leaves out SIGINT (a UI reads Ctrl-C)."""
    found = {getattr(signal, name) for name in _NAMES if hasattr(signal, name)}  # SIGPOLL is SIGIO: one entry
    found = {sig for sig in found if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler)}
    if not keyboard:
        found.discard(signal.SIGINT)
    return tuple(sorted(found))


class StopOnSignal:
    """From `with` on, every ending signal sets `event` instead of ending the process; the handlers before are put
    back on exit. `companion run` enters it before its ports open, so a signal that comes while they open or the
    models load still ends the session the clean way (all notes off, exit 0) once it runs."""

    def __init__(self, *, keyboard: bool = True) -> None:
        self.event = threading.Event()
        self._keyboard = keyboard
        self._previous: dict[signal.Signals, object] = {}

    def _set(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()

    def __enter__(self) -> StopOnSignal:
        self._previous = {sig: signal.signal(sig, self._set) for sig in stop_signals(keyboard=self._keyboard)}
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}
