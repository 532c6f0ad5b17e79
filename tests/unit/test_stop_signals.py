"""The ending signals a session catches, and `StopOnSignal`, which `companion run` holds from before its ports open:
a SIGTERM in that window (a script or service manager stopping Companion as it starts) must end the session the
clean way, not kill the process with its ports open."""

from __future__ import annotations

import os
import signal

from companion.live.session import run_session
from companion.live.stop_signals import StopOnSignal, stop_signals


def test_ending_signals_are_caught_and_the_previous_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignal() as stopping:
        assert signal.SIGTERM in stop_signals() or signal.getsignal(signal.SIGTERM) != before
        os.kill(os.getpid(), signal.SIGTERM)  # would end this test run if it were not caught
        assert stopping.event.wait(2.0)
        os.kill(os.getpid(), signal.SIGHUP)
    assert signal.getsignal(signal.SIGTERM) == before


def test_keyboard_false_leaves_ctrl_c_to_the_ui() -> None:
    assert signal.SIGINT not in stop_signals(keyboard=False)
    with StopOnSignal(keyboard=False):
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class _Takes:
    failed_saves = 0


class _Runtime:
    """Only what run_session asks of a runtime: it records that it was started and closed."""

    def __init__(self) -> None:
        self.closed = False
        self.error = None
        self.takes = _Takes()
        self.calls: list[str] = []

    def start(self) -> _Runtime:
        self.calls.append("start")
        return self

    def log(self, level: str, text: str) -> None:
        self.calls.append(level)

    def add_log_listener(self, listener: object) -> None:
        self.calls.append("listener")

    def close(self) -> None:
        self.calls.append("close")
        self.closed = True


def test_a_signal_before_the_session_runs_ends_it_at_once_and_cleanly(tmp_path) -> None:
    runtime = _Runtime()
    with StopOnSignal() as stopping:
        os.kill(os.getpid(), signal.SIGTERM)  # while the ports were opening
        assert stopping.event.wait(2.0)
        code = run_session(runtime, stopping.event, control=tmp_path / "session.sock")
    assert code == 0
    assert runtime.calls[0] == "start" and runtime.calls[-1] == "close"
