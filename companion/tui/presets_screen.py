"""The preset browser: list, preview the description, load (LoadPreset), and save the current settings as a preset."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from companion.core.control import CCMapping
from companion.errors import CompanionError
from companion.live.intents import LoadPreset
from companion.presets import preset
from companion.presets.writer import save_settings_as_preset


@dataclass(frozen=True)
class PresetEntry:
    id: str  # what loading and the current-preset mark use
    name: str
    description: str
    error: str | None = None


def list_preset_entries() -> tuple[list[PresetEntry], str | None]:
    """The shipped and user presets, or none and why."""
    try:
        found = preset.list_presets()
    except OSError as err:  # an unreadable preset folder is a message in the browser, not a crash
        return [], f"could not list presets: {err}"
    return [PresetEntry(info.id, info.name, info.description, info.error) for info in found], None


def save_preset_file(name: str, settings: Mapping[str, Any], description: str = "", base: str | None = None,
                     cc: Sequence[CCMapping] | None = None) -> Path:
    """Write the live settings as a new user preset (atomically), on top of preset `base` (its clock, bank and
    CC mappings kept; `cc` replaces the mappings, learned ones included); PresetError or ValueError if it cannot."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}", name):
        raise ValueError(f"preset name {name!r}: use letters, digits, space, '-', '_' or '.' (at most 64)")
    return save_settings_as_preset(name, dict(settings), description, base=base, cc=cc)


class PresetsScreen(ModalScreen[LoadPreset | None]):
    """Presets on the left, the highlighted one's description on the right; Enter loads, S saves the current."""

    BINDINGS = [
        Binding("escape", "cancel", "close", show=False),
        Binding("s", "save", "save current settings as a preset", show=False),
    ]

    def __init__(self, settings: Mapping[str, Any], current: str | None,
                 cc: Sequence[CCMapping] | None = None) -> None:
        super().__init__()
        self.settings = dict(settings)
        self.current = current  # the running preset's id: marked in the list, the base of a saved one
        self.cc = cc  # the live CC mappings (learned ones too), saved with the settings
        self.entries: list[PresetEntry] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="presets-body"):
            yield Static("PRESETS", id="presets-title")
            with Horizontal():
                yield OptionList(id="presets-list")
                yield Static("", id="presets-description")
            yield Input(placeholder="name for the new preset, then Enter", id="presets-save")
            yield Static("Enter: load   S: save current settings   Esc: close", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#presets-save", Input).display = False
        entries, problem = list_preset_entries()
        self.entries = entries
        options = self.query_one("#presets-list", OptionList)
        for entry in entries:
            mark = "● " if entry.id == self.current else "  "
            options.add_option(Option(f"{mark}{entry.name}"))
        if problem:
            self.query_one("#presets-description", Static).update(problem)
        elif entries:
            options.highlighted = next((i for i, e in enumerate(entries) if e.id == self.current), 0)
        options.focus()

    @on(OptionList.OptionHighlighted, "#presets-list")
    def _preview(self, event: OptionList.OptionHighlighted) -> None:
        entry = self.entries[event.option_index]
        description = f"cannot load: {entry.error}" if entry.error else entry.description or "(no description)"
        self.query_one("#presets-description", Static).update(f"{entry.name}\n\n{description}")

    @on(OptionList.OptionSelected, "#presets-list")
    def _load(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(LoadPreset(self.entries[event.option_index].id))

    def action_save(self) -> None:
        field = self.query_one("#presets-save", Input)
        field.display = True
        field.focus()

    @on(Input.Submitted, "#presets-save")
    def _save(self, event: Input.Submitted) -> None:
        event.stop()
        name = event.value.strip()
        try:
            path = save_preset_file(name, self.settings, description=f"saved from the live session ({name})",
                                    base=self.current, cc=self.cc)
        except (OSError, ValueError, CompanionError) as err:
            self.query_one("#presets-description", Static).update(f"not saved: {err}")
            return
        self.app.notify(f"preset {name!r} saved to {path}")
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
