"""Session presets: TOML loading and validation, shipped and user presets, the program bank, `companion presets`."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from companion.core.control import CONTROLS, Bank, CCMapping
from companion.core.engine import EngineSettings, available_modes
from companion.errors import PresetError
from companion.preset_schema import (
    ALL_TABLES,
    QUANTIZE_GRIDS,
    SCHEMA,
    TOP_LEVEL,
    Field,
    Invalid,
    coerce,
    did_you_mean,
    show,
    type_word,
)

ENV_CONFIG_DIR = "COMPANION_CONFIG_DIR"
DEFAULT_PRESET = "folk-call-response"
BANK_CHANNEL = Field("channel", 16, "channel the DAW sends Program Change on", "bank.channel", none="omni")
CC_CHANNEL = Field("channel", None, "channel the mapped controllers come on", "cc.channel", none="omni")
# A CC's own range (min/max) must stay inside the setting's range: the schema field each control drives.
_CONTROL_FIELDS = {"temperature": ("sampling", "temperature"), "response_bars": ("engine", "response_bars"),
                   "silence_beats": ("engine", "silence_beats"), "density": ("sampling", "density"),
                   "top_p": ("sampling", "top_p"), "distance": ("variation", "distance"),
                   "humanize": ("midi", "humanize")}
_CC_ENTRY_KEYS = ("control", "min", "max", "channel")


@dataclass(frozen=True)
class ClockOptions:
    """The [clock] table; the runtime applies it at start (a live switch changes only an internal clock's bpm)."""

    source: str = "internal"
    bpm: float = 120.0
    send: bool = False


@dataclass(frozen=True)
class Preset:
    """A validated preset. `engine` holds EngineSettings arguments, `extras` the generator settings beside them."""

    id: str  # the file name without .toml: what --preset and the bank use
    name: str
    description: str
    engine: Mapping[str, Any]
    extras: Mapping[str, Any]
    clock: ClockOptions = ClockOptions()
    cc: tuple[CCMapping, ...] = ()
    bank: Bank | None = None
    path: Path | None = None
    origin: str = "file"  # "shipped" | "user" | "file"
    sha256: str | None = field(default=None, compare=False)

    @property
    def mode(self) -> str:
        return str(self.engine["mode"])

    def engine_settings(self) -> EngineSettings:
        """The engine's settings; PresetError if the preset's mode is not built into this version."""
        if self.mode not in available_modes():
            raise PresetError(f"{self.path or self.id}: mode \"{self.mode}\" is not available in this version "
                              f"(available: {', '.join(available_modes())}); choose another preset")
        return EngineSettings(**self.engine)

    def request_settings(self) -> dict[str, Any]:
        """What the runtime puts under RequestAnswer.settings (engine settings are laid over it)."""
        return {"preset": self.id, **self.extras}


PAD_LOW_NOTES = {"low": 36, "middle": 48, "high": 60}  # [harmony] register -> the pad's lowest note


def _harmony_engine_values(engine: dict[str, Any]) -> None:
    """[harmony] in the engine's terms: register -> pad_low_note, one channel -> all three voices on it."""
    register = engine.get("pad_low_note")
    if isinstance(register, str):
        engine["pad_low_note"] = PAD_LOW_NOTES[register]
    channels = engine.get("harmony_channels")
    if channels is not None and len(channels) == 1:
        engine["harmony_channels"] = (channels[0],) * 3
    elif channels is not None and len(channels) == 2:
        engine["harmony_channels"] = (channels[0], channels[1], channels[1])  # tenor and bass share the second


def config_dir() -> Path:
    """The user's Companion folder: $COMPANION_CONFIG_DIR, else the platform's config folder (platformdirs)."""
    override = os.environ.get(ENV_CONFIG_DIR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("companion", appauthor=False))


def user_presets_dir() -> Path:
    return config_dir() / "presets"


def shipped_presets_dir() -> Path:
    """presets/ beside the package in a checkout; companion/shipped_presets in an installed wheel."""
    checkout = Path(__file__).resolve().parent.parent / "presets"
    if checkout.is_dir():
        return checkout
    return Path(__file__).resolve().parent / "shipped_presets"


def _preset_paths() -> dict[str, tuple[Path, str]]:
    """id -> (file, origin); a user preset overrides the shipped one of the same name."""
    found: dict[str, tuple[Path, str]] = {}
    for folder, origin in ((shipped_presets_dir(), "shipped"), (user_presets_dir(), "user")):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = (path, origin)
    return found


# --- parsing and validation ------------------------------------------------------------------------


def _find_line(lines: Sequence[str], table: str | None, key: str) -> int | None:
    """The 1-based line where `key` is set in `[table]` (None: before any table), for messages."""
    current: str | None = None
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(lines, start=1):
        header = re.match(r"^\s*\[+\s*([^\]]+?)\s*\]+", line)
        if header:
            current = header.group(1).split(".")[0].strip().strip("\"'")
            if table is not None and current == table and key == "":
                return number
            continue
        if current == table and pattern.match(line):
            return number
    return None


class _Problems:
    """Collects every problem of a file, each with its line where we can find it."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.items: list[tuple[int, str]] = []

    def add(self, table: str | None, key: str, text: str) -> None:
        line = _find_line(self.lines, table, key)
        self.items.append((line or 0, f"line {line}: {text}" if line else text))

    def messages(self) -> list[str]:
        return [text for _, text in sorted(self.items, key=lambda item: item[0])]


def _syntax_error(source: str, err: tomllib.TOMLDecodeError, lines: Sequence[str]) -> PresetError:
    text = str(err)
    match = re.search(r"\(at line (\d+), column (\d+)\)", text)
    reason = re.sub(r"\s*\(at .*\)$", "", text)
    if "overwrite" in reason.lower():
        reason += " (a key or a table is written twice)"
    if match:
        line = int(match.group(1))
        shown = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        where = f"line {line}, column {match.group(2)}"
        return PresetError(f"{source}, {where}: not valid TOML: {reason}" + (f"\n  {line} | {shown}" if shown else "")
                           + "\nCheck quotes, brackets and `key = value` pairs on that line.")
    return PresetError(f"{source}: not valid TOML: {text}")


def _value(problems: _Problems, table: str, key: str, spec: Field, value: Any, base_dir: Path | None) -> Any:
    try:
        return coerce(spec, value, base_dir)
    except Invalid as err:
        problems.add(table, key, f"[{table}] {key} = {show(value)} {err}; allowed: {spec.allowed()}")
        return default_value(spec)


def default_value(spec: Field) -> Any:
    """The default in the form its target wants (the schema writes defaults as a preset file would)."""
    return None if spec.default is None else coerce(spec, spec.default)


def _unknown(problems: _Problems, table: str | None, key: str, options: Iterable[str]) -> None:
    options = list(options)
    where = f"[{table}]" if table else "the top level"
    hint = did_you_mean(key, options)
    if not hint:
        home = [t for t, fields in SCHEMA.items() if key in fields and t != table]
        hint = f" it belongs in [{home[0]}]." if home else ""
    problems.add(table, key, f"unknown key \"{key}\" in {where};{hint} allowed: {', '.join(options)}")


def _parse_cc(problems: _Problems, table: Mapping[str, Any]) -> tuple[CCMapping, ...]:
    channel = _value(problems, "cc", "channel", CC_CHANNEL, table["channel"], None) if "channel" in table else None
    mappings: list[CCMapping] = []
    for key, entry in table.items():
        if key == "channel":
            continue
        if not key.isdigit() or int(key) > 127:
            problems.add("cc", key, f"[cc] key \"{key}\" is not a controller number; write e.g. "
                         f"21 = \"temperature\" (0..127) or channel = 1")
            continue
        spec_entry = {"control": entry} if isinstance(entry, str) else entry
        if not isinstance(spec_entry, dict):
            problems.add("cc", key, f"[cc] {key} = {show(entry)} is {type_word(entry)}; write a control name "
                         f"(e.g. \"temperature\") or {{ control = \"temperature\", min = 0.5, max = 1.5 }}")
            continue
        for extra_key in spec_entry:
            if extra_key not in _CC_ENTRY_KEYS:
                problems.add("cc", key, f"[cc] {key}: unknown key \"{extra_key}\";"
                             f"{did_you_mean(extra_key, _CC_ENTRY_KEYS)} allowed: {', '.join(_CC_ENTRY_KEYS)}")
        control = spec_entry.get("control")
        if control not in CONTROLS:
            problems.add("cc", key, f"[cc] {key}: control {show(control)} is not a control;"
                         f"{did_you_mean(str(control), list(CONTROLS))} controls: {', '.join(sorted(CONTROLS))}")
            continue
        bounds: list[float | None] = []
        for bound in ("min", "max"):
            value = spec_entry.get(bound)
            if value is not None and control in _CONTROL_FIELDS:
                table_name, field_name = _CONTROL_FIELDS[control]
                spec = dataclasses.replace(SCHEMA[table_name][field_name], none=None)
                value = _value(problems, "cc", key, spec, value, None)
            elif value is not None:
                problems.add("cc", key, f"[cc] {key}: {control} is a switch or a choice; it takes no {bound}")
                value = None
            bounds.append(value)
        own_channel = spec_entry.get("channel")
        if own_channel is not None:
            own_channel = _value(problems, "cc", key, CC_CHANNEL, own_channel, None)
        try:
            mappings.append(CCMapping(int(key), control, own_channel if own_channel is not None else channel,
                                      bounds[0], bounds[1]))
        except ValueError as err:
            problems.add("cc", key, f"[cc] {key}: {err}")
    return tuple(mappings)


def _parse_bank(problems: _Problems, table: Mapping[str, Any]) -> Bank:
    channel = _value(problems, "bank", "channel", BANK_CHANNEL, table["channel"], None) if "channel" in table else 15
    programs: dict[int, str] = {}
    for key, name in table.items():
        if key == "channel":
            continue
        if not key.isdigit() or int(key) > 127:
            problems.add("bank", key, f"[bank] key \"{key}\" is not a program number 0..127; write e.g. "
                         f"0 = \"folk-call-response\"")
        elif not isinstance(name, str) or not name.strip():
            problems.add("bank", key, f"[bank] {key} = {show(name)} must be a preset name in quotes")
        else:
            programs[int(key)] = name.strip()
    return Bank(MappingProxyType(programs), channel)


def parse_preset(text: str, *, source: str = "<preset>", preset_id: str = "preset", path: Path | None = None,
                 origin: str = "file") -> Preset:
    """Validate a preset's TOML text; PresetError listing every problem with its line, value and allowed values."""
    lines = text.splitlines()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _syntax_error(source, err, lines) from None
    problems = _Problems(text)
    base_dir = path.parent if path is not None else None
    for key in data:
        if key not in TOP_LEVEL and key not in ALL_TABLES:
            _unknown(problems, None, key, [*TOP_LEVEL, *ALL_TABLES])
    meta: dict[str, str] = {}
    for key in TOP_LEVEL:
        value = data.get(key, preset_id if key == "name" else "")
        if not isinstance(value, str):
            problems.add(None, key, f"{key} = {show(value)} is {type_word(value)}; write it in quotes")
            value = ""
        meta[key] = value
    targets: dict[str, Any] = {}
    for table_name, fields in SCHEMA.items():
        table = data.get(table_name, {})
        if not isinstance(table, dict):
            problems.add(None, table_name, f"{table_name} must be a table: write [{table_name}] on its own line")
            table = {}
        for key in table:
            if key not in fields:
                _unknown(problems, table_name, key, fields)
        for key, spec in fields.items():
            value = _value(problems, table_name, key, spec, table[key], base_dir) if key in table \
                else default_value(spec)
            targets[spec.target] = value
    special: dict[str, Mapping[str, Any]] = {}
    for table_name in ("cc", "bank"):
        table = data.get(table_name, {})
        if not isinstance(table, dict):
            problems.add(None, table_name, f"{table_name} must be a table: write [{table_name}] on its own line")
            table = {}
        special[table_name] = table
    cc = _parse_cc(problems, special["cc"])
    bank = _parse_bank(problems, special["bank"]) if special["bank"] else None

    engine = {t.split(".", 1)[1]: v for t, v in targets.items() if t.startswith("engine.")}
    _harmony_engine_values(engine)
    beats_per_bar, beat_unit = engine.pop("meter")
    engine.update(beats_per_bar=beats_per_bar, beat_unit=beat_unit)
    try:  # cross-field checks; a mode still being written is checked as call_response
        EngineSettings(**{**engine, "mode": engine["mode"] if engine["mode"] in available_modes() else
                          "call_response"})
    except (TypeError, ValueError) as err:
        problems.add(None, "", f"[engine]: {err}")
    if problems.items:
        count = len(problems.items)
        header = f"{source}: {count} problem{'s' if count > 1 else ''}"
        error = PresetError(header + ":\n  " + "\n  ".join(problems.messages())
                            + "\nFix the file; `companion presets --check FILE` checks it again.")
        error.problems = problems.messages()  # type: ignore[attr-defined]
        raise error
    extras = {t.split(".", 1)[1]: v for t, v in targets.items() if t.startswith("extra.")}
    extras["quantize_ticks"] = QUANTIZE_GRIDS[extras["quantize"]]
    clock = ClockOptions(targets["clock.source"], targets["clock.bpm"], targets["clock.send"])
    return Preset(preset_id, meta["name"], meta["description"], MappingProxyType(engine), MappingProxyType(extras),
                  clock, cc, bank, path, origin, hashlib.sha256(text.encode()).hexdigest())


def load_preset_file(path: str | Path, origin: str = "file") -> Preset:
    """Read and validate one preset file; PresetError names the file and every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PresetError(f"{path}: no such preset file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PresetError(f"{path}: cannot read the preset file ({err})") from None
    return parse_preset(text, source=str(path), preset_id=path.stem, path=path, origin=origin)


def _looks_like_path(name: str) -> bool:
    return name.endswith(".toml") or os.sep in name or "/" in name


def load_preset(name_or_path: str | Path) -> Preset:
    """A preset by name (user presets first, then shipped) or by file path; PresetError if missing or invalid."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        return load_preset_file(text)
    paths = _preset_paths()
    if text not in paths:
        by_title = {info.name.lower(): info.id for info in list_presets() if info.error is None}
        if text.lower() in by_title:
            text = by_title[text.lower()]
        else:
            raise PresetError(f"no preset named \"{text}\";{did_you_mean(text, list(paths))} presets: "
                              f"{', '.join(sorted(paths)) or 'none'} (`companion presets` lists them)")
    path, origin = paths[text]
    return load_preset_file(path, origin)


@dataclass(frozen=True)
class PresetInfo:
    """One line of the preset list; `error` is set for a preset that does not validate."""

    id: str
    name: str
    description: str
    origin: str
    path: Path
    overrides_shipped: bool = False
    error: str | None = None


def list_presets() -> list[PresetInfo]:
    """Every shipped and user preset (a user one replacing the shipped one of its name), sorted by id."""
    shipped = shipped_presets_dir()
    infos: list[PresetInfo] = []
    for preset_id, (path, origin) in sorted(_preset_paths().items()):
        overrides = origin == "user" and (shipped / path.name).is_file()
        try:
            preset = load_preset_file(path, origin)
        except PresetError as err:
            infos.append(PresetInfo(preset_id, preset_id, "", origin, path, overrides, err.message))
            continue
        infos.append(PresetInfo(preset_id, preset.name, preset.description, origin, path, overrides))
    return infos


def save_preset(name: str, settings: Mapping[str, Any], description: str = "") -> Path:
    """Save a live settings dict as user preset `name` (see preset_writer.save_settings_as_preset)."""
    from companion.preset_writer import save_settings_as_preset  # it imports this module

    return save_settings_as_preset(name, settings, description)


def preload(names: Iterable[str]) -> tuple[dict[str, Preset], list[str]]:
    """Load the presets a bank names, ahead of the gig: (loaded by name, error messages of the others)."""
    loaded: dict[str, Preset] = {}
    errors: list[str] = []
    for name in dict.fromkeys(names):
        try:
            loaded[name] = load_preset(name)
        except PresetError as err:
            errors.append(err.message)
    return loaded, errors


# --- `companion presets [--check PATH...]` ----------------------------------------------------------


def _check_bank(preset: Preset, known: Iterable[str]) -> list[str]:
    known = list(known)
    if preset.bank is None:
        return []
    return [f"[bank] {program} = \"{name}\": no such preset;{did_you_mean(name, known)} presets: {', '.join(known)}"
            for program, name in sorted(preset.bank.programs.items()) if name not in known]


def presets_command(paths: Sequence[str] | None) -> int:
    """List the presets (no paths), or validate files (or names): 0 if all are valid, 2 otherwise."""
    known = sorted(_preset_paths())
    if not paths:
        infos = list_presets()
        width = max((len(i.id) for i in infos), default=10)
        print(f"shipped: {shipped_presets_dir()}\nuser:    {user_presets_dir()}\n")
        for info in infos:
            origin = "user*" if info.overrides_shipped else info.origin
            text = f"INVALID: {info.error.splitlines()[0]}" if info.error else info.description
            print(f"  {info.id:<{width}}  {origin:<7}  {text}")
        if any(i.overrides_shipped for i in infos):
            print("\n  * a user preset replacing the shipped one of the same name")
        return 0
    failed = 0
    for item in paths:
        try:
            preset = load_preset_file(item) if Path(item).exists() or _looks_like_path(item) else load_preset(item)
            problems = _check_bank(preset, known)
            if problems:
                raise PresetError(f"{item}: " + "\n  ".join(problems))
        except PresetError as err:
            failed += 1
            print(f"companion: {err.title}: {err.message}", file=sys.stderr)
            continue
        note = "" if preset.mode in available_modes() else f" (mode {preset.mode} is not built in this version)"
        print(f"ok  {item}: {preset.name} - {preset.description}{note}")
    return 2 if failed else 0
