"""The live controls (temperature, response length, density, key lock, variation distance, harmony style, drums)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.widget import Widget

from companion.core.drums import DRUM_STYLES
from companion.core.settings import HARMONY_STYLES

CC_MAX = 127
BAR_CELLS = 12
NARROW_BELOW = 56  # columns of the panel's content: below, the compact rows


@dataclass(frozen=True)
class ControlSpec:
    """One control: the setting it changes (a key of ChangeSettings), its kind, range and step."""

    key: str
    label: str
    kind: str  # "float" | "int" | "bool" | "choice"
    default: Any
    low: float = 0.0
    high: float = 1.0
    step: float = 1.0
    choices: tuple[str, ...] = ()
    none_label: str | None = None  # a numeric control that may be unset ("auto"): one step below `low`
    start: float | None = None  # where stepping up from unset lands

    def clamp(self, value: Any) -> Any:
        if value is None and self.none_label is not None:
            return None
        if self.kind == "bool":
            return bool(value)
        if self.kind == "choice":
            return value if value in self.choices else self.default
        number = min(self.high, max(self.low, float(value)))
        return int(round(number)) if self.kind == "int" else round(number, 4)

    def step_value(self, value: Any, direction: int) -> Any:
        """The value one step up (direction 1) or down (-1); on/off toggles, choices cycle."""
        if self.kind == "bool":
            return not bool(value)
        if self.kind == "choice":
            index = self.choices.index(value) if value in self.choices else 0
            return self.choices[(index + direction) % len(self.choices)]
        if value is None:
            return self.clamp(self.start if self.start is not None else self.low) if direction > 0 else None
        if self.none_label is not None and direction < 0 and float(value) <= self.low:
            return None
        return self.clamp(float(value) + direction * self.step)

    def from_cc(self, cc_value: int) -> Any:
        """A CC value 0..127 scaled onto this control: a range, on/off at 64, or a choice per slice."""
        cc_value = max(0, min(CC_MAX, int(cc_value)))
        if self.kind == "bool":
            return cc_value >= 64
        if self.kind == "choice":
            return self.choices[min(len(self.choices) - 1, cc_value * len(self.choices) // (CC_MAX + 1))]
        value = self.low + (self.high - self.low) * cc_value / CC_MAX
        if self.kind == "float":  # snap to the step so a knob lands on the values the keys reach
            value = self.low + round((value - self.low) / self.step) * self.step
        return self.clamp(value)

    def fraction(self, value: Any) -> float:
        """Where the value sits in the range, 0..1, for the bar."""
        if value is None:
            return 0.0
        if self.kind == "bool":
            return 1.0 if value else 0.0
        if self.kind == "choice":
            index = self.choices.index(value) if value in self.choices else 0
            return index / max(1, len(self.choices) - 1)
        return (float(value) - self.low) / (self.high - self.low)

    def format(self, value: Any) -> str:
        if value is None:
            return self.none_label or "-"
        if self.kind == "bool":
            return "on" if value else "off"
        if self.kind == "float":
            return f"{float(value):.2f}"
        if self.kind == "int":
            return f"{int(value)} bar{'s' if int(value) != 1 else ''}" if self.key == "response_bars" else str(value)
        return str(value)


# Keys and ranges as the live controls' (companion/core/control.py); settings not in EngineSettings (density,
# distance, harmony_style) live in the preset's extras, and the runtime's PresetSession routes them there.
CONTROLS: tuple[ControlSpec, ...] = (
    ControlSpec("temperature", "Temperature", "float", 1.0, 0.1, 2.0, 0.05),
    ControlSpec("response_bars", "Response length", "int", 2, 1, 16, 1),
    ControlSpec("density", "Density (notes/bar)", "float", None, 0.5, 16.0, 0.5, none_label="auto", start=4.0),
    ControlSpec("key_lock", "Key lock", "bool", True),
    ControlSpec("distance", "Variation distance", "float", 0.3, 0.0, 1.0, 0.05),
    ControlSpec("morph_steps", "Morph steps", "int", 4, 2, 16, 1),
    ControlSpec("harmony_style", "Harmony style", "choice", "chorale", choices=HARMONY_STYLES),
    ControlSpec("drum_style", "Drum style", "choice", "rock", choices=DRUM_STYLES),
    ControlSpec("drum_density", "Drum density", "float", 0.5, 0.0, 1.0, 0.05),
    ControlSpec("drum_fill_rate", "Drum fills", "float", 0.75, 0.0, 1.0, 0.05),
    ControlSpec("drum_swing", "Drum swing", "float", 0.0, 0.0, 1.0, 0.05),
    ControlSpec("drum_humanize", "Drum humanize", "float", 1.0, 0.0, 1.0, 0.05),
    ControlSpec("drum_mute", "Drums muted", "bool", False),
)
CONTROLS_BY_KEY = {spec.key: spec for spec in CONTROLS}


def setting_value(settings: Mapping[str, Any], spec: ControlSpec) -> Any:
    """The control's value in a snapshot's settings dict (top level, or in the preset's extras), else its default."""
    if spec.key in settings and (settings[spec.key] is not None or spec.none_label is not None):
        return spec.clamp(settings[spec.key])
    extras = settings.get("extras")
    if isinstance(extras, Mapping) and spec.key in extras:
        return spec.clamp(extras[spec.key])
    return spec.default


class ControlsPanel(Widget):
    """The controls with their values, the selected one marked, MIDI-learn state and CC mappings shown."""

    can_focus = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.values: dict[str, Any] = {spec.key: spec.default for spec in CONTROLS}
        self.selected = 0
        self.learning: str | None = None
        self.cc_map: dict[str, tuple[int | None, int]] = {}  # control key -> (channel or None, CC number)
        self.detected_key: str | None = None

    @property
    def selected_spec(self) -> ControlSpec:
        return CONTROLS[self.selected]

    def select(self, step: int) -> ControlSpec:
        self.selected = (self.selected + step) % len(CONTROLS)
        self.refresh()
        return self.selected_spec

    def show(self, values: Mapping[str, Any], detected_key: str | None, cc_map: Mapping[str, tuple[int | None, int]],
             learning: str | None) -> None:
        """Take a new picture; redraws only if something the panel shows changed."""
        state = (dict(values), detected_key, dict(cc_map), learning)
        if state == (self.values, self.detected_key, self.cc_map, self.learning):
            return
        self.values, self.detected_key, self.cc_map, self.learning = state
        self.refresh()

    def render(self) -> Text:
        # Narrow (an 80-column terminal): shorter labels and bars, no detected key (the transport shows it).
        narrow = 0 < self.size.width < NARROW_BELOW
        label_width, value_width, bar_cells = (14, 7, 3) if narrow else (19, 8, BAR_CELLS)
        text = Text(no_wrap=True, overflow="ellipsis")  # a row too long is cut, never wrapped onto the next
        text.append("CONTROLS", style="bold")
        text.append(" ↑↓ ←→ c learn\n" if narrow else "  ↑↓ select  ←→ change  c learn CC\n", style="dim")
        for index, spec in enumerate(CONTROLS):
            value = self.values.get(spec.key, spec.default)
            chosen = index == self.selected
            text.append("▶ " if chosen else "  ", style="bold yellow")
            text.append(f"{spec.label[:label_width]:<{label_width}}", style="bold reverse" if chosen else "")
            text.append(f"{spec.format(value):>{value_width}} ", style="bold")
            filled = round(spec.fraction(value) * bar_cells)
            text.append("█" * filled, style="green")
            text.append("░" * (bar_cells - filled), style="#585858")
            if spec.key == "key_lock" and not narrow:
                text.append(f" {self.detected_key or 'no key yet'}", style="cyan")
            gap = " " if narrow else "  "
            if self.learning == spec.key:
                text.append(gap)
                text.append("MIDI learn" if narrow else "move a knob…", style="bold black on yellow")
            elif spec.key in self.cc_map:
                channel, control = self.cc_map[spec.key]
                where = "" if channel is None else f"/ch{channel + 1}"
                text.append(f"{gap}CC{control}{where}", style="magenta")
            text.append("\n")
        return text
