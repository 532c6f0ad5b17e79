"""The log pane: warnings and info from the runtime (port lost, model missing, malformed MIDI), newest at the bottom."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.widgets import RichLog

LEVEL_STYLES = {"error": "bold red", "warning": "yellow", "info": "", "debug": "dim"}
MAX_LINES = 500


class LogPane(RichLog):
    """A scrolling log; `add_lines` takes a batch so a burst from the runtime costs one redraw."""

    can_focus = False

    def __init__(self, **kwargs: Any) -> None:
        # min_width: RichLog lays lines out at least 78 wide by default, which cuts them off in a narrow pane.
        super().__init__(max_lines=MAX_LINES, wrap=True, markup=False, highlight=False, min_width=16, **kwargs)
        self.lines_shown = 0

    def on_mount(self) -> None:
        self.border_title = "LOG"

    def add_lines(self, lines: Iterable[tuple[str, str]]) -> None:
        for level, text in lines:
            line = Text()
            line.append(f"{level[:4]:<5}", style=LEVEL_STYLES.get(level, "") or "dim")
            line.append(text, style=LEVEL_STYLES.get(level, ""))
            self.write(line)
            self.lines_shown += 1
