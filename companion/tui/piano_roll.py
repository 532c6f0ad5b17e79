"""The live piano roll: the player's and Companion's notes scrolling past a playhead, planned notes ahead of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.widget import Widget

from companion.core.events import PPQ
from companion.tui.keyboard import note_name

PLAYER_STYLE = "bold dodger_blue1"
COMPANION_STYLE = "bold dark_orange"
COMMITTED_STYLE = "dark_orange"
TENTATIVE_STYLE = "orange4"
PLAYHEAD_STYLE = "bold white"
BAR_LINE_STYLE = "grey30"
BLACK_KEY_ROW = "on grey7"
LABEL_CELLS = 4
PLAYHEAD_AT = 0.7  # the playhead's place across the roll: most of it shows what was played, the rest what is planned
BLACK_KEYS = {1, 3, 6, 8, 10}
DEFAULT_CENTRE_PITCH = 60

LEGEND = (
    f"[{PLAYER_STYLE}]█ you[/]  [{COMPANION_STYLE}]█ companion[/]  "
    f"[{COMMITTED_STYLE}]▓ committed[/]  [{TENTATIVE_STYLE}]░ tentative[/]"
)


@dataclass(frozen=True)
class RollView:
    """What part of musical time and pitch the roll shows."""

    now_ticks: int
    ticks_per_col: int
    low_pitch: int
    rows: int
    cols: int
    bar_ticks: int = 4 * PPQ

    @property
    def playhead_col(self) -> int:
        return int(self.cols * PLAYHEAD_AT)

    def col_of(self, ticks: int) -> int:
        return self.playhead_col + (ticks - self.now_ticks) // self.ticks_per_col

    def ticks_of(self, col: int) -> int:
        return self.now_ticks + (col - self.playhead_col) * self.ticks_per_col


def ticks_per_col_for(cols: int, bar_ticks: int) -> int:
    """A 16th per column, wider when the roll is too narrow to show four bars."""
    sixteenth = PPQ // 4
    wanted = -(-4 * bar_ticks // max(1, cols))  # ceil: four bars at least
    return max(sixteenth, -(-wanted // (PPQ // 16)) * (PPQ // 16))


def fit_pitch_window(pitches: Sequence[int], rows: int, current_low: int | None) -> int:
    """The lowest pitch shown: kept where it was while every pitch fits, moved only when one would not."""
    rows = max(1, rows)
    if not pitches:
        return current_low if current_low is not None else DEFAULT_CENTRE_PITCH - rows // 2
    low, high = min(pitches), max(pitches)
    if current_low is not None and current_low <= low and high < current_low + rows:
        return current_low
    if high - low + 1 > rows:
        # Too wide to show it all: keep the middle of what is playing.
        centre = sorted(pitches)[len(pitches) // 2]
        return max(0, min(128 - rows, centre - rows // 2))
    spare = rows - (high - low + 1)
    return max(0, min(128 - rows, low - spare // 2))


def render_roll(notes: Sequence[Sequence[Any]], planned: Sequence[Sequence[Any]], view: RollView) -> list[Text]:
    """One header line with bar numbers, then one line per pitch, highest first."""
    cols, rows = view.cols, view.rows
    cells: list[list[tuple[str, str]]] = [[(" ", "")] * cols for _ in range(rows)]
    header = [(" ", "")] * cols
    first_bar_col_ticks = view.ticks_of(0)
    bar = max(0, first_bar_col_ticks // view.bar_ticks)
    while True:
        col = view.col_of(bar * view.bar_ticks)
        if col >= cols:
            break
        if 0 <= col < cols:
            for row in cells:
                row[col] = ("│", BAR_LINE_STYLE)
            for offset, char in enumerate(str(bar + 1)):
                if col + offset < cols:
                    header[col + offset] = (char, "grey50")
        bar += 1
    playhead = view.playhead_col
    for row in cells:
        row[playhead] = ("│", PLAYHEAD_STYLE)

    def paint(pitch: int, start_ticks: int, end_ticks: int, char: str, style: str) -> None:
        row = view.low_pitch + rows - 1 - pitch
        if not 0 <= row < rows:
            return
        first = max(0, view.col_of(start_ticks))
        last = min(cols - 1, view.col_of(max(start_ticks, end_ticks - 1)))
        for col in range(first, last + 1):
            cells[row][col] = (char, style)

    for item in planned:
        pitch, start_ticks, end_ticks, committed = item[0], item[1], item[2], bool(item[3])
        char, style = ("▓", COMMITTED_STYLE) if committed else ("░", TENTATIVE_STYLE)
        paint(pitch, start_ticks, end_ticks, char, style)
    for item in notes:
        source, pitch, start_ticks, end_ticks = item[0], item[1], item[2], item[3]
        end = view.now_ticks if end_ticks is None else end_ticks
        style = PLAYER_STYLE if source == "player" else COMPANION_STYLE
        paint(pitch, start_ticks, max(end, start_ticks + 1), "█", style)

    lines = [_runs(" " * LABEL_CELLS, "", header)]
    for row_index, row in enumerate(cells):
        pitch = view.low_pitch + rows - 1 - row_index
        background = BLACK_KEY_ROW if pitch % 12 in BLACK_KEYS else ""
        label = f"{note_name(pitch):<{LABEL_CELLS}}" if pitch % 12 == 0 else " " * LABEL_CELLS
        lines.append(_runs(label, background, row))
    return lines


def _runs(label: str, background: str, row: Sequence[tuple[str, str]]) -> Text:
    """A line of cells as a Text, one span per run of the same style (cheap at 30 redraws a second)."""
    text = Text(label, style="grey50")
    run_chars: list[str] = []
    run_style: str | None = None
    for char, style in row:
        if style != run_style and run_chars:
            text.append("".join(run_chars), style=f"{run_style} {background}".strip())
            run_chars = []
        run_style = style
        run_chars.append(char)
    if run_chars:
        text.append("".join(run_chars), style=f"{run_style} {background}".strip())
    return text


class PianoRoll(Widget):
    """Redrawn from each snapshot; owns its pitch window so it does not jump while the music stays in range."""

    can_focus = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.notes: list[Sequence[Any]] = []
        self.planned: list[Sequence[Any]] = []
        self.now_ticks = 0
        self.bar_ticks = 4 * PPQ
        self._low_pitch: int | None = None

    def on_mount(self) -> None:
        self.border_title = "PIANO ROLL"
        self.border_subtitle = LEGEND

    def _cols_rows(self) -> tuple[int, int]:
        return max(8, self.content_size.width - LABEL_CELLS), max(1, self.content_size.height - 1)

    def show(self, notes: Sequence[Sequence[Any]], planned: Sequence[Sequence[Any]], now_ticks: int,
             bar_ticks: int) -> None:
        """New data; redrawn only when the picture would change (the playhead moves a column at a time)."""
        notes, planned, bar_ticks = list(notes), list(planned), max(1, bar_ticks)
        tpc = ticks_per_col_for(self._cols_rows()[0], bar_ticks)
        if (notes, planned, now_ticks // tpc, bar_ticks) == (self.notes, self.planned, self.now_ticks // tpc,
                                                            self.bar_ticks):
            return
        self.notes, self.planned, self.now_ticks, self.bar_ticks = notes, planned, now_ticks, bar_ticks
        self.refresh()

    def view(self) -> RollView:
        cols, rows = self._cols_rows()
        tpc = ticks_per_col_for(cols, self.bar_ticks)
        now_ticks = self.now_ticks // tpc * tpc  # whole columns: the grid steps, it does not shimmer
        probe = RollView(now_ticks, tpc, 0, rows, cols, self.bar_ticks)
        start_ticks, end_ticks = probe.ticks_of(0), probe.ticks_of(cols)
        visible = [item[1] for item in self.notes if (item[3] is None or item[3] >= start_ticks)
                   and item[2] < end_ticks]
        visible += [item[0] for item in self.planned if item[2] >= start_ticks and item[1] < end_ticks]
        self._low_pitch = fit_pitch_window(visible, rows, self._low_pitch)
        return RollView(now_ticks, tpc, self._low_pitch, rows, cols, self.bar_ticks)

    def render(self) -> Text:
        return Text("\n").join(render_roll(self.notes, self.planned, self.view()))
