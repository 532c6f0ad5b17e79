"""The help screen: every key the app answers to, built from the app's own bindings so it cannot go stale."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from companion.tui.keyboard import KEY_OFFSETS

KEY_LABELS = {
    "space": "Space", "escape": "Esc", "question_mark": "?", "up": "↑", "down": "↓", "left": "←", "right": "→",
    "minus": "-", "equals_sign": "=", "plus": "+", "enter": "Enter", "tab": "Tab", "f1": "F1",
}


def key_label(keys: str) -> str:
    """'space,f12' -> 'Space / F12'; 'ctrl+s' -> 'Ctrl+S'."""
    labels = []
    for key in keys.split(","):
        key = key.strip()
        if key in KEY_LABELS:
            labels.append(KEY_LABELS[key])
        elif "+" in key:
            labels.append("+".join(part.capitalize() if len(part) > 1 else part.upper() for part in key.split("+")))
        else:
            labels.append(key.upper() if len(key) == 1 and key.isalpha() and key.isupper() else
                          key.capitalize() if len(key) > 1 else key)
    return " / ".join(labels)


def help_rows(bindings: Sequence[Binding]) -> list[tuple[str, str]]:
    """(keys, what they do) for every binding, then the keyboard piano."""
    rows = [(key_label(b.key), b.description) for b in bindings if b.description]
    white = "".join(k for k, v in KEY_OFFSETS.items() if v % 12 in (0, 2, 4, 5, 7, 9, 11))
    black = "".join(k for k, v in KEY_OFFSETS.items() if v % 12 in (1, 3, 6, 8, 10))
    rows += [
        (" ".join(white.upper()), "keyboard piano: white keys (A = C of the octave)"),
        (" ".join(black.upper()), "keyboard piano: black keys"),
    ]
    return rows


class HelpScreen(ModalScreen[None]):
    """Lists every key; any of Esc, ? or F1 closes it."""

    BINDINGS = [
        Binding("escape,question_mark,f1,q", "close", "close help", show=False),
    ]

    def __init__(self, rows: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.rows = list(rows)

    def compose(self) -> ComposeResult:
        table = Table(title="Companion — keys", title_style="bold", expand=False, show_edge=False)
        table.add_column("key", style="bold yellow", no_wrap=True)
        table.add_column("does")
        for keys, does in self.rows:
            table.add_row(keys, does)
        with VerticalScroll(id="help-body"):
            yield Static(table, id="help-table")
            yield Static(Text("Esc, ? or F1 to close", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
