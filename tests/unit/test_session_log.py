"""The session's terminal log is written by a thread of its own: a thread that logs while the terminal does not
take output (a stalled remote shell) goes on at once, and every line still arrives, in order."""

from __future__ import annotations

import logging
import sys
import threading

import pytest

from companion.live.session import _TerminalLog


class _StuckTerminal:
    """A stderr that takes no output until released."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.open = threading.Event()

    def write(self, text: str) -> int:
        self.open.wait(10)
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_logging_never_waits_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _StuckTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        writer = _TerminalLog()
        assert handler not in root.handlers  # the terminal is behind the writer's queue now
        done = threading.Event()

        def engine() -> None:
            for i in range(3):
                logging.getLogger("companion").info("answer-%d begins", i)
            done.set()

        threading.Thread(target=engine, daemon=True).start()
        assert done.wait(5), "a thread that logged waited for the stuck terminal"
        assert terminal.lines == []  # nothing written yet: the terminal still takes nothing
        writer.hold()
        logging.getLogger("companion").info("while the UI draws")
        writer.release()
        terminal.open.set()
        writer.close()
        assert handler in root.handlers
        text = "".join(terminal.lines)
        assert [line for line in ("answer-0", "answer-1", "answer-2") if line in text] == ["answer-0", "answer-1",
                                                                                          "answer-2"]
        assert text.index("answer-0") < text.index("answer-1") < text.index("answer-2")
        assert "while the UI draws" not in text  # held back while the UI owned the terminal
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
