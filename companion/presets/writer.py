"""Writing presets: a Preset (or the live state) as a complete TOML file in the user's presets folder."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from companion.core.control import CCMapping
from companion.core.engine import EngineSettings
from companion.errors import PresetError
from companion.files.writing import write_atomically
from companion.presets.controls import BANK_CHANNEL
from companion.presets.preset import PAD_LOW_NOTES, Preset, load_preset, parse_preset, user_presets_dir
from companion.presets.schema import SCHEMA, to_toml_value


def _toml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_scalar(v) for v in value) + "]"
    return str(value)


def dump_preset(preset: Preset) -> str:
    """The preset as a complete TOML file (every key written, defaults included), so it documents itself."""
    targets = {f"engine.{k}": v for k, v in preset.engine.items()}
    targets["engine.meter"] = (preset.engine["beats_per_bar"], preset.engine["beat_unit"])
    targets.update({f"extra.{k}": v for k, v in preset.extras.items()})
    targets.update({f"clock.{k}": v for k, v in dataclasses.asdict(preset.clock).items()})
    registers = {note: name for name, note in PAD_LOW_NOTES.items()}  # the engine's pad note -> [harmony] register
    targets["engine.pad_low_note"] = registers.get(targets.get("engine.pad_low_note"), "middle")
    out = [f"name = {_toml_scalar(preset.name)}", f"description = {_toml_scalar(preset.description)}"]
    for table_name, fields in SCHEMA.items():
        out += ["", f"[{table_name}]"]
        for key, spec in fields.items():
            value = targets.get(spec.target, spec.default)
            if value is None and spec.none is None and spec.kind != "path":
                out.append(f"# {key}: not set ({spec.doc})")  # a key without a value: left out of the file
                continue
            value = to_toml_value(spec, value)
            if value == "" and spec.kind == "path":
                continue
            out.append(f"{key} = {_toml_scalar(value)}")
    if preset.cc:
        out += ["", "[cc]"]
        for m in {m.cc: m for m in preset.cc}.values():  # one mapping per controller: the later one holds
            parts = [f"control = {_toml_scalar(m.control)}"]
            parts += [f"{k} = {_toml_scalar(v)}" for k, v in (("min", m.low), ("max", m.high)) if v is not None]
            if m.channel is not None:
                parts.append(f"channel = {m.channel + 1}")
            out.append(f"{m.cc} = {{ {', '.join(parts)} }}")
    if preset.bank is not None and preset.bank.programs:
        out += ["", "[bank]", f"channel = {_toml_scalar(to_toml_value(BANK_CHANNEL, preset.bank.channel))}"]
        out += [f"{p} = {_toml_scalar(n)}" for p, n in sorted(preset.bank.programs.items())]
    return "\n".join(out) + "\n"


def save_user_preset(preset: Preset, preset_id: str | None = None) -> Path:
    """Write `preset` to the user presets folder as `<id>.toml` (atomically), after validating it round trip."""
    preset_id = re.sub(r"[^a-z0-9_-]+", "-", (preset_id or preset.id).lower()).strip("-") or "my-preset"
    text = dump_preset(dataclasses.replace(preset, id=preset_id))
    target = user_presets_dir() / f"{preset_id}.toml"
    parse_preset(text, source=str(target), preset_id=preset_id, path=target)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, lambda handle: handle.write(text.encode("utf-8")))
    return target


def preset_from_settings(base: Preset, settings: EngineSettings, extras: Mapping[str, Any],
                         cc: tuple[CCMapping, ...] | None = None, name: str | None = None,
                         description: str | None = None) -> Preset:
    """The live state (engine settings, extras changed by CC, learned mappings) as a preset to save."""
    return dataclasses.replace(
        base, name=name or base.name, description=base.description if description is None else description,
        engine=MappingProxyType(dataclasses.asdict(settings)), extras=MappingProxyType({**base.extras, **extras}),
        cc=base.cc if cc is None else cc)


def save_settings_as_preset(name: str, settings: Mapping[str, Any], description: str = "", *,
                            base: str | None = None, cc: Sequence[CCMapping] | None = None) -> Path:
    """The UI's "save preset": a settings dict (EngineSettings fields, 0-based channels, plus an optional
    "extras" dict) written as user preset `name`, on top of the running preset `base` (its clock, bank and
    anything else the live state does not hold are kept; `cc` - the live mappings, learned ones included -
    replaces its [cc]); PresetError if a value does not fit the schema."""
    base_preset = _base_preset(base, name)
    fields = {f.name for f in dataclasses.fields(EngineSettings)}
    extras = {**{k: v for k, v in settings.items() if k not in fields}, **dict(settings.get("extras") or {})}
    engine = {**base_preset.engine, **{k: v for k, v in settings.items() if k in fields}}
    try:
        live = EngineSettings(**engine)
    except (TypeError, ValueError) as err:
        raise PresetError(f"preset {name!r} not saved: {err}") from None
    known = {k: v for k, v in extras.items() if k in base_preset.extras and k not in _NOT_SAVED_EXTRAS}
    preset = preset_from_settings(base_preset, live, known, tuple(cc) if cc is not None else None, name=name,
                                  description=description)
    return save_user_preset(preset, name)


_NOT_SAVED_EXTRAS = ("quantize_ticks", "preset")  # derived from other fields, or the running preset's id


def _base_preset(base: str | None, name: str) -> Preset:
    """The running preset to save on top of; the defaults when there is none or it no longer loads."""
    if base:
        try:
            return load_preset(base)
        except PresetError:
            pass  # changed or removed since it was loaded: the live state is still worth saving
    return parse_preset("", preset_id=name)
