"""The preset browser: list, preview the description, load (LoadPreset), and save the current settings as a preset."""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
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

from companion.tui.intents import LoadPreset

CONFIG_DIR_ENV = "COMPANION_CONFIG_DIR"
# Where each saved setting goes in a preset file; anything else is [engine].
SECTION_OF = {"temperature": "sampling", "density": "sampling", "seed": "sampling", "harmony_style": "harmony",
              "distance": "variation"}
KEY_IN_SECTION = {"harmony_style": "style"}


@dataclass(frozen=True)
class PresetEntry:
    name: str
    description: str


def _presets_module() -> Any | None:
    try:
        return importlib.import_module("companion.presets")
    except ImportError:
        return None


def list_preset_entries() -> tuple[list[PresetEntry], str | None]:
    """The presets companion.presets knows (shipped and user), or none and why."""
    module = _presets_module()
    if module is None or not hasattr(module, "list_presets"):
        return [], "presets are not available in this build (companion.presets is missing)"
    try:
        found = module.list_presets()
    except Exception as err:  # a broken preset folder is a message in the browser, not a crash
        return [], f"could not list presets: {err}"
    entries = []
    for item in found:
        if isinstance(item, str):
            entries.append(PresetEntry(item, ""))
        else:
            entries.append(PresetEntry(str(getattr(item, "name", item)), str(getattr(item, "description", "") or "")))
    return entries, None


def describe_preset(name: str) -> str:
    """The preset's description, or the message saying why it cannot be loaded."""
    module = _presets_module()
    if module is None or not hasattr(module, "load_preset"):
        return ""
    try:
        preset = module.load_preset(name)
    except Exception as err:  # PresetError carries the file, key and fix; show it as it is
        return f"cannot load: {err}"
    return str(getattr(preset, "description", "") or "")


def user_preset_dir() -> Path:
    """companion.presets' user folder if it names one, else $COMPANION_CONFIG_DIR/presets or the platform's."""
    module = _presets_module()
    for attr in ("user_preset_dir", "user_presets_dir"):
        if module is not None and callable(getattr(module, attr, None)):
            return Path(getattr(module, attr)())
    if os.environ.get(CONFIG_DIR_ENV):
        return Path(os.environ[CONFIG_DIR_ENV]) / "presets"
    import platformdirs

    return Path(platformdirs.user_config_dir("companion")) / "presets"


def _toml_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return None  # None and nested values are left to their defaults


def preset_toml(name: str, settings: Mapping[str, Any], description: str) -> str:
    """The settings as a preset file: name, description, then one table per section."""
    flat = {k: v for k, v in settings.items() if k != "extras"}
    extras = settings.get("extras")
    if isinstance(extras, Mapping):
        flat.update(extras)
    sections: dict[str, list[str]] = {}
    for key, value in flat.items():
        rendered = _toml_value(value)
        if rendered is not None:
            section = SECTION_OF.get(key, "engine")
            sections.setdefault(section, []).append(f"{KEY_IN_SECTION.get(key, key)} = {rendered}")
    lines = [f"name = {_toml_value(name)}", f"description = {_toml_value(description)}"]
    for section in sorted(sections):
        lines += ["", f"[{section}]", *sections[section]]
    return "\n".join(lines) + "\n"


def save_preset_file(name: str, settings: Mapping[str, Any], description: str = "") -> Path:
    """Write the settings as a new user preset (atomically); companion.presets.save_preset does it if it exists."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}", name):
        raise ValueError(f"preset name {name!r}: use letters, digits, space, '-', '_' or '.' (at most 64)")
    module = _presets_module()
    if module is not None and callable(getattr(module, "save_preset", None)):
        return Path(module.save_preset(name, dict(settings), description))
    folder = user_preset_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name.replace(' ', '-').lower()}.toml"
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(preset_toml(name, settings, description), encoding="utf-8")
    os.replace(tmp, path)
    return path


class PresetsScreen(ModalScreen[LoadPreset | None]):
    """Presets on the left, the highlighted one's description on the right; Enter loads, S saves the current."""

    BINDINGS = [
        Binding("escape", "cancel", "close", show=False),
        Binding("s", "save", "save current settings as a preset", show=False),
    ]

    def __init__(self, settings: Mapping[str, Any], current: str | None) -> None:
        super().__init__()
        self.settings = dict(settings)
        self.current = current
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
            mark = "● " if entry.name == self.current else "  "
            options.add_option(Option(f"{mark}{entry.name}"))
        if problem:
            self.query_one("#presets-description", Static).update(problem)
        elif entries:
            options.highlighted = next((i for i, e in enumerate(entries) if e.name == self.current), 0)
        options.focus()

    @on(OptionList.OptionHighlighted, "#presets-list")
    def _preview(self, event: OptionList.OptionHighlighted) -> None:
        entry = self.entries[event.option_index]
        description = entry.description or describe_preset(entry.name) or "(no description)"
        self.query_one("#presets-description", Static).update(f"{entry.name}\n\n{description}")

    @on(OptionList.OptionSelected, "#presets-list")
    def _load(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(LoadPreset(self.entries[event.option_index].name))

    def action_save(self) -> None:
        field = self.query_one("#presets-save", Input)
        field.display = True
        field.focus()

    @on(Input.Submitted, "#presets-save")
    def _save(self, event: Input.Submitted) -> None:
        event.stop()
        name = event.value.strip()
        try:
            path = save_preset_file(name, self.settings, description=f"saved from the live session ({name})")
        except (OSError, ValueError) as err:
            self.query_one("#presets-description", Static).update(f"not saved: {err}")
            return
        self.app.notify(f"preset {name!r} saved to {path}")
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
