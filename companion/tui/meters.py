"""The transport bar (ports, clock, tempo, bar/beat, preset, mode) and the meters (notes, lateness, generation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.widget import Widget

LATE_OK_NS = 2_000_000  # a p99 under 2 ms is inaudible
LATE_WARN_NS = 10_000_000  # over 10 ms a musician starts to feel it


def _get(mapping: Any, key: str, default: Any = None) -> Any:
    return mapping.get(key, default) if isinstance(mapping, Mapping) else default


def same_text(a: Text, b: Text) -> bool:
    """Equal characters and styles: a redraw would show nothing new."""
    return a.plain == b.plain and a.spans == b.spans


def beat_indicator(beat: int, beats_per_bar: int, running: bool) -> Text:
    """One box per beat of the bar, the current one lit (the downbeat in its own colour)."""
    text = Text()
    for index in range(1, max(1, beats_per_bar) + 1):
        lit = running and index == beat
        style = ("bold black on red" if index == 1 else "bold black on green") if lit else "#6c6c6c"
        text.append(f" {index} ", style=style)
        text.append(" ")
    return text


COMPACT_BELOW = 110  # columns: a narrower transport drops its labels and hints, and shows REC on the clock line


def transport_text(snap: Mapping[str, Any], recording: bool, width: int | None = None) -> Text:
    """Three lines, each clipped to the width (never wrapped): ports and backend; clock, tempo and position;
    preset, mode and model."""
    compact = width is not None and width < COMPACT_BELOW
    ports = _get(snap, "ports", {})
    lost = list(_get(ports, "lost", []) or [])
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(" MIDI ", style="bold")
    text.append(f"{_get(ports, 'backend', '?')} ", style="cyan")
    if lost:
        text.append(" LOST ", style="bold white on red")
        text.append(f" {', '.join(map(str, lost))}", style="red")
    else:
        text.append("● connected", style="green")
    gap = "  " if compact else "   "
    names = [str(_get(ports, key, "?")) for key in ("in", "out")]
    if compact:  # Companion's own ports are virtual unless chosen: the word is left out
        names = [name.removesuffix(" (virtual)") for name in names]
    text.append(f"{gap}in: {names[0]}{gap}out: {names[1]}", style="")
    text.append("\n" if compact else "   (i: choose)\n", style="dim")

    running = bool(_get(snap, "clock_running", False))
    text.append(" CLOCK ", style="bold")
    text.append(f"{_get(snap, 'clock', '?'):<9}", style="cyan")
    link = _get(snap, "link")
    if link:
        peers = int(_get(link, "peers", 0))
        text.append(f"{peers} peer{'' if peers == 1 else 's'} ", style="bold green" if peers else "yellow")
    text.append("▶ " if running else "■ ", style="green" if running else "red")
    bpm = _get(snap, "bpm")
    text.append(f"{bpm:6.1f} bpm   " if isinstance(bpm, int | float) else "   ?   bpm   ", style="bold")
    bar, beat = _get(snap, "bar", 1), _get(snap, "beat", 1)
    beats_per_bar = _get(snap, "beats_per_bar", _get(_get(snap, "settings", {}), "beats_per_bar", 4))
    text.append(f"bar {bar:>4}  beat {beat}  ", style="bold")
    text.append_text(beat_indicator(int(beat or 1), int(beats_per_bar or 4), running))
    if compact:  # the preset line is full: the record state goes here
        text.append("  ")
        text.append(" ● REC " if recording else " rec off ", style="bold white on red" if recording else "dim")
    text.append("\n")

    engine = _get(snap, "engine", {})
    labels = ("", " · ", " · ", " · ") if compact else (" PRESET ", "   MODE ", "   MODEL ", "   KEY ")
    text.append(labels[0] or " ", style="bold")
    text.append(f"{_get(snap, 'preset') or '(none)'}", style="bold yellow")
    text.append(labels[1], style="bold")
    text.append(f"{_get(engine, 'mode', '?')}", style="bold yellow")
    state = "answering" if _get(engine, "answering") else ("listening" if _get(engine, "capturing") else "waiting")
    text.append(f" ({state})", style="dim")
    text.append(labels[2], style="bold")
    text.append(f"{_get(snap, 'generator', '?')}", style="cyan")
    text.append(labels[3], style="bold")
    text.append(f"{_get(engine, 'key') or '-'}", style="cyan")
    harmony = _get(snap, "harmony") or {}
    if _get(harmony, "chord"):  # the lead-sheet harmonizer's chord symbol now, and the likeliest next
        text.append("   CHORD ", style="bold")
        text.append(f"{_get(harmony, 'chord')}", style="bold magenta")
        text.append(f" → {_get(harmony, 'next_chord') or '?'}", style="magenta")
    if not compact:
        text.append("   ")
        text.append(" ● REC " if recording else " rec off ", style="bold white on red" if recording else "dim")
    return text


def _ms(value_ns: Any) -> str:
    return f"{value_ns / 1e6:5.2f}ms" if isinstance(value_ns, int | float) else "   - ms"


def meters_text(snap: Mapping[str, Any]) -> Text:
    """Sixteen columns a line (a label, then its value right-aligned): it fits beside the controls at 80 columns."""
    counters = _get(snap, "counters", {})
    lateness = _get(snap, "lateness", {})
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("METERS\n", style="bold")
    text.append(f"notes in {_get(counters, 'notes_in', 0):>7}\n")
    text.append(f"notes out{_get(counters, 'notes_out', 0):>7}\n")
    text.append(f"answers  {_get(counters, 'answers', 0):>7}\n")
    p99 = _get(lateness, "p99_ns")
    style = "green" if not isinstance(p99, int | float) or p99 < LATE_OK_NS else (
        "yellow" if p99 < LATE_WARN_NS else "bold red")
    text.append("late p99 ")
    text.append(f"{_ms(p99):>7}\n", style=style)
    text.append(f"late max {_ms(_get(lateness, 'max_ns')):>7}\n", style="dim")
    generation_ms = _get(snap, "generation_ms")
    text.append("generate ")
    text.append(f"{generation_ms:5.1f}ms\n" if isinstance(generation_ms, int | float) else "   - ms\n", style="cyan")
    malformed = _get(snap, "malformed", {})
    total = sum(v for v in malformed.values() if isinstance(v, int)) if isinstance(malformed, Mapping) else 0
    text.append(f"malformed{total:>7}", style="yellow" if total else "dim")
    return text


class TransportBar(Widget):
    """The top of the screen: everything the musician checks at a glance."""

    can_focus = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._text = Text()
        self._shown: tuple[Mapping[str, Any], bool] = ({}, False)

    def show(self, snap: Mapping[str, Any], recording: bool) -> None:
        self._shown = (snap, recording)
        text = transport_text(snap, recording, self.size.width or None)
        if not same_text(text, self._text):
            self._text = text
            self.refresh()

    def on_resize(self) -> None:
        self.show(*self._shown)

    def render(self) -> Text:
        return self._text


class Meters(Widget):
    """Notes in/out, scheduler lateness p99, generation time of the last answer."""

    can_focus = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._text = meters_text({})

    def show(self, snap: Mapping[str, Any]) -> None:
        text = meters_text(snap)
        if not same_text(text, self._text):
            self._text = text
            self.refresh()

    def render(self) -> Text:
        return self._text
