"""A preset file's problems: each found with its line while the file is validated, then reported together."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from companion.errors import PresetError
from companion.preset_schema import SCHEMA, Field, Invalid, coerce, default_value, did_you_mean, show


def find_line(lines: Sequence[str], table: str | None, key: str) -> int | None:
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


class Problems:
    """Collects every problem of a file, each with its line where we can find it."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.items: list[tuple[int, str]] = []

    def add(self, table: str | None, key: str, text: str) -> None:
        line = find_line(self.lines, table, key)
        self.items.append((line or 0, f"line {line}: {text}" if line else text))

    def table(self, data: Mapping[str, Any], name: str) -> dict[str, Any]:
        """data[name] as a table (empty if missing); a problem, and an empty table, if it is not one."""
        table = data.get(name, {})
        if not isinstance(table, dict):
            self.add(None, name, f"{name} must be a table: write [{name}] on its own line")
            return {}
        return table

    def messages(self) -> list[str]:
        return [text for _, text in sorted(self.items, key=lambda item: item[0])]


def syntax_error(source: str, err: tomllib.TOMLDecodeError, lines: Sequence[str]) -> PresetError:
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


def field_value(problems: Problems, table: str, key: str, spec: Field, value: Any, base_dir: Path | None) -> Any:
    """The value coerced for its target; a problem (and the default) if it does not fit."""
    try:
        return coerce(spec, value, base_dir)
    except Invalid as err:
        problems.add(table, key, f"[{table}] {key} = {show(value)} {err}; allowed: {spec.allowed()}")
        return default_value(spec)


def unknown_key(problems: Problems, table: str | None, key: str, options: Iterable[str]) -> None:
    options = list(options)
    where = f"[{table}]" if table else "the top level"
    hint = did_you_mean(key, options)
    if not hint:
        home = [t for t, fields in SCHEMA.items() if key in fields and t != table]
        hint = f" it belongs in [{home[0]}]." if home else ""
    problems.add(table, key, f"unknown key \"{key}\" in {where};{hint} allowed: {', '.join(options)}")
