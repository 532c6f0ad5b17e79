"""Session presets: `Preset`, TOML loading and validation, shipped and user presets, `companion presets`."""

from __future__ import annotations

import hashlib
import os
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

from companion.core.control import Bank, CCMapping
from companion.core.engine import EngineSettings, available_modes
from companion.errors import PresetError
from companion.files.reading import NotReadable, nesting_depth, read_bounded
from companion.presets.controls import check_bank, parse_controls
from companion.presets.problems import MAX_PROBLEMS_SHOWN, Problems, field_value, syntax_error, unknown_key
from companion.presets.schema import (
    ALL_TABLES,
    QUANTIZE_GRIDS,
    SCHEMA,
    TOP_LEVEL,
    default_value,
    did_you_mean,
    show,
    type_word,
)

ENV_CONFIG_DIR = "COMPANION_CONFIG_DIR"
DEFAULT_PRESET = "folk-call-response"
MAX_PRESET_BYTES = 256 << 10  # the shipped presets are 1-3 KB
MAX_DEPTH = 4  # file -> [table] -> cc entry { control = ... } or a list such as pitch_range -> value


@dataclass(frozen=True)
class ClockOptions:
    """The [clock] table; the runtime applies it at start (a live switch changes only the bpm, of the internal clock
    or of the Link session)."""

    source: str = "internal"
    bpm: float | None = None  # None: the preset sets no tempo; the running one is kept (120 BPM at start)
    send: bool = False
    start_stop: bool = True  # with Link: follow the session's start/stop


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
    checkout = Path(__file__).resolve().parents[2] / "presets"
    if checkout.is_dir():
        return checkout
    return Path(__file__).resolve().parents[1] / "shipped_presets"


def _preset_paths() -> dict[str, tuple[Path, str]]:
    """id -> (file, origin); a user preset overrides the shipped one of the same name."""
    found: dict[str, tuple[Path, str]] = {}
    for folder, origin in ((shipped_presets_dir(), "shipped"), (user_presets_dir(), "user")):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = (path, origin)
    return found


# --- parsing and validation ------------------------------------------------------------------------


def parse_preset(text: str, *, source: str = "<preset>", preset_id: str = "preset", path: Path | None = None,
                 origin: str = "file") -> Preset:
    """Validate a preset's TOML text; PresetError listing every problem with its line, value and allowed values."""
    lines = text.splitlines()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise syntax_error(source, err, lines) from None
    except RecursionError:
        data = None  # deeper than the parser goes
    if data is None or nesting_depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise PresetError(f"{source}: lists or tables nested more than {MAX_DEPTH} deep; a preset holds tables of "
                          "keys (see presets/duet.toml)")
    problems = Problems(text)
    base_dir = path.parent if path is not None else None
    for key in data:
        if key not in TOP_LEVEL and key not in ALL_TABLES:
            unknown_key(problems, None, key, [*TOP_LEVEL, *ALL_TABLES])
    meta: dict[str, str] = {}
    for key in TOP_LEVEL:
        value = data.get(key, preset_id if key == "name" else "")
        if not isinstance(value, str):
            problems.add(None, key, f"{key} = {show(value)} is {type_word(value)}; write it in quotes")
            value = ""
        meta[key] = value
    targets: dict[str, Any] = {}
    for table_name, fields in SCHEMA.items():
        table = problems.table(data, table_name)
        for key in table:
            if key not in fields:
                unknown_key(problems, table_name, key, fields)
        for key, spec in fields.items():
            value = field_value(problems, table_name, key, spec, table[key], base_dir) if key in table \
                else default_value(spec)
            targets[spec.target] = value
    cc, bank = parse_controls(problems, data)

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
        shown = problems.messages()[:MAX_PROBLEMS_SHOWN]
        more = [f"... and {count - len(shown)} more"] if count > len(shown) else []
        error = PresetError(header + ":\n  " + "\n  ".join([*shown, *more])
                            + "\nFix the file; `companion presets --check FILE` checks it again.")
        error.problems = problems.messages()  # type: ignore[attr-defined]
        raise error
    extras = {t.split(".", 1)[1]: v for t, v in targets.items() if t.startswith("extra.")}
    extras["quantize_ticks"] = QUANTIZE_GRIDS[extras["quantize"]]
    clock = ClockOptions(targets["clock.source"], targets["clock.bpm"], targets["clock.send"],
                         targets["clock.start_stop"])
    return Preset(preset_id, meta["name"], meta["description"], MappingProxyType(engine), MappingProxyType(extras),
                  clock, cc, bank, path, origin, hashlib.sha256(text.encode()).hexdigest())


def load_preset_file(path: str | Path, origin: str = "file") -> Preset:
    """Read and validate one preset file; PresetError names the file and every problem."""
    path = Path(path)
    try:
        text = read_bounded(path, MAX_PRESET_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise PresetError(f"{path}: no such preset file") from None
    except NotReadable as err:
        raise PresetError(f"{path}: {err}; a preset is a TOML text file like presets/duet.toml") from None
    except UnicodeDecodeError:
        raise PresetError(f"{path}: not a preset file: it is not text (is it a MIDI file?); a preset is a TOML text "
                          "file like presets/duet.toml: give one, or a preset name (`companion presets`)") from None
    except OSError as err:
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
        elif Path(text).is_file():  # an existing file by a bare name (take.mid, my-preset): read it as one
            return load_preset_file(text)
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


def presets_command(paths: Sequence[str] | None) -> int:
    """List the presets (no paths), or validate files (or names): 0 if all are valid, 2 otherwise."""
    known = sorted(_preset_paths())
    if not paths:
        infos = list_presets()
        width = max((len(i.id) for i in infos), default=10)
        print(f"shipped: {shipped_presets_dir()}\nuser:    {user_presets_dir()}\n")
        for info in infos:
            origin = "user*" if info.overrides_shipped else info.origin
            # An invalid preset: its problems in full, one per line under it (the first line alone names no problem).
            text = "INVALID: " + "\n      ".join(info.error.splitlines()) if info.error else info.description
            print(f"  {info.id:<{width}}  {origin:<7}  {text}")
        if any(i.overrides_shipped for i in infos):
            print("\n  * a user preset replacing the shipped one of the same name")
        return 0
    failed = 0
    for item in paths:
        try:
            preset = load_preset_file(item) if Path(item).exists() or _looks_like_path(item) else load_preset(item)
            problems = check_bank(preset.bank, known)
            if problems:
                raise PresetError(f"{item}: " + "\n  ".join(problems))
        except PresetError as err:
            failed += 1
            print(f"companion: {err.title}: {err.message}", file=sys.stderr)
            continue
        note = "" if preset.mode in available_modes() else f" (mode {preset.mode} is not built in this version)"
        print(f"ok  {item}: {preset.name} - {preset.description}{note}")
    return 2 if failed else 0
