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
from companion.presets.schema import SCHEMA, Field, Invalid, coerce, default_value, did_you_mean, show

MAX_PROBLEMS_SHOWN = 20  # a file's first problems are listed, the rest counted
_HEADER = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
_KEY = re.compile(r"^\s*[\"']?([^\"'=]+?)[\"']?\s*=")


def line_index(lines: Sequence[str]) -> dict[tuple[str | None, str], int]:
    """(table, key) -> the 1-based line where the key is first set in that table (None: before any table), and
    (table, "") -> the table's header: built in one pass, so that a file of many problems is checked in linear
    time (a search per problem made 10,000 unknown keys take minutes)."""
    index: dict[tuple[str | None, str], int] = {}
    current: str | None = None
    for number, line in enumerate(lines, start=1):
        header = _HEADER.match(line)
        if header:
            current = header.group(1).split(".")[0].strip().strip("\"'")
            index.setdefault((current, ""), number)
            continue
        key = _KEY.match(line)
        if key:
            index.setdefault((current, key.group(1).strip()), number)
    return index


class Problems:
    """Collects every problem of a file, each with its line where we can find it."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.items: list[tuple[int, str]] = []
        self._index: dict[tuple[str | None, str], int] | None = None

    def add(self, table: str | None, key: str, text: str) -> None:
        if self._index is None:
            self._index = line_index(self.lines)
        line = self._index.get((table, key)) if key or table is not None else None
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
    # A key of another table (`mode = ...` at the top) belongs there: say so before any look-alike ("model").
    home = [t for t, fields in SCHEMA.items() if key in fields and t != table]
    hint = f" it belongs in [{home[0]}] (below a line [{home[0]}])." if home else ""
    if not hint and len(problems.items) < MAX_PROBLEMS_SHOWN:  # only shown ones: difflib is slow on 10,000 keys
        hint = did_you_mean(key, options)
    problems.add(table, key, f"unknown key \"{key}\" in {where};{hint} allowed: {', '.join(options)}")
