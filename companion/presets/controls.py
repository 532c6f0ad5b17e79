"""A preset's [cc] mappings and its [bank] of Program Changes: parsing, validation, and the bank's preset names."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from companion.core.control import CONTROLS, Bank, CCMapping
from companion.presets.problems import Problems, field_value
from companion.presets.schema import SCHEMA, Field, did_you_mean, show, type_word

BANK_CHANNEL = Field("channel", 16, "channel the DAW sends Program Change on", "bank.channel", none="omni")
CC_CHANNEL = Field("channel", None, "channel the mapped controllers come on", "cc.channel", none="omni")
# A CC's own range (min/max) must stay inside the setting's range: the schema field of the same name as the
# control (every ranged control is a preset setting; a test gives each one a range).
# a control's preset key, found by where both send the value ([drums] density is drum_density, not density)
_CONTROL_FIELDS = {f.target.split(".", 1)[1]: (table, name) for table, fields in SCHEMA.items()
                   for name, f in fields.items() if f.target.split(".", 1)[1] in CONTROLS
                   and CONTROLS[f.target.split(".", 1)[1]].kind in ("int", "float")}
_CC_ENTRY_KEYS = ("control", "min", "max", "channel")


def parse_controls(problems: Problems, data: Mapping[str, Any]) -> tuple[tuple[CCMapping, ...], Bank | None]:
    """The file's [cc] mappings and its [bank] (None without one); every problem goes to `problems`."""
    cc_table, bank_table = problems.table(data, "cc"), problems.table(data, "bank")
    return parse_cc(problems, cc_table), parse_bank(problems, bank_table) if bank_table else None


def _numbered(problems: Problems, section: str, table: Mapping[str, Any], what: str,
              example: str) -> Iterator[tuple[str, Any]]:
    """The table's keys 0..127 with their values (`channel` aside); any other key is a problem."""
    for key, value in table.items():
        if key == "channel":
            continue
        if not key.isdigit() or int(key) > 127:
            problems.add(section, key, f"[{section}] key \"{key}\" is not {what}; write e.g. {example}")
            continue
        yield key, value


def parse_cc(problems: Problems, table: Mapping[str, Any]) -> tuple[CCMapping, ...]:
    channel = field_value(problems, "cc", "channel", CC_CHANNEL, table["channel"], None) \
        if "channel" in table else None
    mappings: list[CCMapping] = []
    for key, entry in _numbered(problems, "cc", table, "a controller number",
                                '21 = "temperature" (0..127) or channel = 1'):
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
                value = field_value(problems, "cc", key, spec, value, None)
            elif value is not None:
                problems.add("cc", key, f"[cc] {key}: {control} is a switch or a choice; it takes no {bound}")
                value = None
            bounds.append(value)
        own_channel = spec_entry.get("channel")
        if own_channel is not None:
            own_channel = field_value(problems, "cc", key, CC_CHANNEL, own_channel, None)
        try:
            mappings.append(CCMapping(int(key), control, own_channel if own_channel is not None else channel,
                                      bounds[0], bounds[1]))
        except ValueError as err:
            problems.add("cc", key, f"[cc] {key}: {err}")
    return tuple(mappings)


def parse_bank(problems: Problems, table: Mapping[str, Any]) -> Bank:
    channel = field_value(problems, "bank", "channel", BANK_CHANNEL, table["channel"], None) \
        if "channel" in table else 15
    programs: dict[int, str] = {}
    for key, name in _numbered(problems, "bank", table, "a program number 0..127", '0 = "folk-call-response"'):
        if not isinstance(name, str) or not name.strip():
            problems.add("bank", key, f"[bank] {key} = {show(name)} must be a preset name in quotes")
        else:
            programs[int(key)] = name.strip()
    return Bank(MappingProxyType(programs), channel)


def check_bank(bank: Bank | None, known: Iterable[str]) -> list[str]:
    """A message for each program of the bank that names no known preset."""
    known = list(known)
    if bank is None:
        return []
    return [f"[bank] {program} = \"{name}\": no such preset;{did_you_mean(name, known)} presets: {', '.join(known)}"
            for program, name in sorted(bank.programs.items()) if name not in known]
