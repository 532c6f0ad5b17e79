"""The live piano roll: the player's and Companion's notes scrolling past a playhead, planned notes ahead of it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from companion.core.events import PPQ
from companion.tui.keyboard import note_name

PLAYER_STYLE = "bold #0087ff"
COMPANION_STYLE = "bold #ff8700"
COMMITTED_STYLE = "#ff8700"
TENTATIVE_STYLE = "#875f00"
PLAYHEAD_STYLE = "bold white"
BAR_LINE_STYLE = "#4e4e4e"
BLACK_KEY_ROW = "on #121212"
LABEL_CELLS = 4
# At most this often a new picture: the UI shares the interpreter with the scheduler, so it draws sparingly.
MIN_FRAME_NS = 100_000_000
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


Cell = tuple[str, str]  # (character, style)
RollLine = tuple[str, str, list[Cell]]  # (label, row background, cells)


def roll_lines(notes: Sequence[Sequence[Any]], planned: Sequence[Sequence[Any]], view: RollView) -> list[RollLine]:
    """One header line with bar numbers, then one line per pitch, highest first, as cells."""
    cols, rows = view.cols, view.rows
    cells: list[list[Cell]] = [[(" ", "")] * cols for _ in range(rows)]
    header: list[Cell] = [(" ", "")] * cols
    bar = max(0, view.ticks_of(0) // view.bar_ticks)
    while (col := view.col_of(bar * view.bar_ticks)) < cols:
        if col >= 0:
            for row in cells:
                row[col] = ("│", BAR_LINE_STYLE)
            for offset, char in enumerate(str(bar + 1)):
                if col + offset < cols:
                    header[col + offset] = (char, "#808080")
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

    lines: list[RollLine] = [(" " * LABEL_CELLS, "", header)]
    for row_index, row in enumerate(cells):
        pitch = view.low_pitch + rows - 1 - row_index
        background = BLACK_KEY_ROW if pitch % 12 in BLACK_KEYS else ""
        label = f"{note_name(pitch):<{LABEL_CELLS}}" if pitch % 12 == 0 else " " * LABEL_CELLS
        lines.append((label, background, row))
    return lines


def _runs(row: Sequence[Cell]) -> list[tuple[str, str]]:
    """Cells merged into runs of one style: (text, style)."""
    chars = [char for char, _ in row]
    styles = [style for _, style in row]
    runs: list[tuple[str, str]] = []
    begin = 0
    for index in range(1, len(styles)):
        if styles[index] != styles[index - 1]:
            runs.append(("".join(chars[begin:index]), styles[begin]))
            begin = index
    if styles:
        runs.append(("".join(chars[begin:]), styles[begin]))
    return runs


def render_roll(notes: Sequence[Sequence[Any]], planned: Sequence[Sequence[Any]], view: RollView) -> list[Text]:
    """The roll as Rich Text lines (for tests and plain rendering)."""
    texts = []
    for label, background, row in roll_lines(notes, planned, view):
        text = Text(label, style="#808080")
        for chunk, style in _runs(row):
            text.append(chunk, style=f"{style} {background}".strip())
        texts.append(text)
    return texts


@lru_cache(maxsize=64)
def _style(spec: str) -> Style:
    return Style.parse(spec) if spec else Style.null()


def roll_strips(notes: Sequence[Sequence[Any]], planned: Sequence[Sequence[Any]], view: RollView) -> list[Strip]:
    """The roll as Textual strips: segments with parsed, cached styles, no markup or Text on the way (fast)."""
    strips = []
    label_style = _style("#808080")
    for label, background, row in roll_lines(notes, planned, view):
        segments = [Segment(label, label_style)]
        segments += [Segment(chunk, _style(f"{style} {background}".strip())) for chunk, style in _runs(row)]
        strips.append(Strip(segments, LABEL_CELLS + view.cols))
    return strips


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
        self._strips: list[Strip] | None = None  # drawn once per change, handed out line by line
        self._drawn_ns = 0
        self._dirty = False
        self.renders = 0  # how often it was drawn (the UI benchmark reports it)

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
        if (notes, planned, now_ticks // tpc, bar_ticks) != (self.notes, self.planned, self.now_ticks // tpc,
                                                            self.bar_ticks):
            self.notes, self.planned, self.now_ticks, self.bar_ticks = notes, planned, now_ticks, bar_ticks
            self._dirty = True
        now_ns = time.monotonic_ns()
        # At most one picture per MIN_FRAME_NS: a change waits for a later snapshot (the UI's CPU is the engine's).
        if self._dirty and now_ns - self._drawn_ns >= MIN_FRAME_NS:
            self._dirty = False
            self._drawn_ns = now_ns
            self._strips = None
            self.refresh()

    def on_resize(self) -> None:
        self._strips = None

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

    def strips(self) -> list[Strip]:
        if self._strips is None:
            self.renders += 1
            self._strips = roll_strips(self.notes, self.planned, self.view())
        return self._strips

    def render_line(self, y: int) -> Strip:
        strips = self.strips()
        width = self.content_size.width
        if y >= len(strips):
            return Strip.blank(width)
        return strips[y] if strips[y].cell_length == width else strips[y].crop_extend(0, width, None)
