"""The messages between Companion's processes (the real-time process, its model worker, an attached UI): JSON
lines, versioned, every field checked on the way out and on the way in."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from companion.core.events import Note, Phrase, RequestAnswer
from companion.errors import CompanionError

WIRE_VERSION = 1
MAX_LINE_BYTES = 1 << 20  # a request carries a phrase and settings: far below this; more is a broken peer

_INT = (int,)
_TEXT = (str,)
# Every message type and its fields (name -> accepted types); a message must have exactly these.
FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    # real-time process -> worker
    "request": {"request": (dict,)},  # an answer to stream, one note per credit
    "more": {"tag": _TEXT, "notes": _INT},  # credit: the real-time side took notes, the worker may make that many
    "cancel": {"tag": _TEXT},
    "stop": {},
    # worker -> real-time process
    "ready": {"name": _TEXT, "checkpoint": (str, type(None)), "warning": (str, type(None))},
    "note": {"tag": _TEXT, "note": (list,)},
    "done": {"tag": _TEXT},
    "failed": {"tag": _TEXT, "text": _TEXT},
    "fatal": {"text": _TEXT},  # the worker cannot serve at all (its model did not load)
    # real-time process -> harmony worker: one model's next operation, numbered per model
    "harmony_op": {"model": _INT, "seq": _INT, "op": _TEXT, "args": (list,)},
    # harmony worker -> real-time process
    "harmony_ready": {"models": _INT, "rows": (list,), "voice_ranges": (list,), "max_drop": _INT,
                      "checkpoint": _TEXT},
    "harmony_chords": {"model": _INT, "seq": _INT, "chords": (list,)},  # a model's next chords, after op `seq`
    # an attached UI -> real-time process
    "snapshot": {},  # asks for the picture
    "intent": {"intent": (dict,)},  # {"kind": class name, "fields": {...}}
    "inject": {"data": (list,)},  # MIDI bytes from the UI's computer-keyboard piano
    # real-time process -> an attached UI
    "picture": {"snapshot": (dict,)},
    "log": {"level": _TEXT, "text": _TEXT},
    "refused": {"text": _TEXT},  # a message the real-time process could not act on, and why
}


class WireError(CompanionError):
    """A message that is not one of ours: another version, an unknown type, a missing or ill-typed field."""

    title = "Model worker message error"


def encode(kind: str, **fields: Any) -> bytes:
    """One message as a JSON line; the same checks as `decode`, so a bad message never leaves either side."""
    message = {"v": WIRE_VERSION, "type": kind, **fields}
    _check(message)
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """A checked message from one line, or WireError saying what is wrong with it."""
    if len(line) > MAX_LINE_BYTES:
        raise WireError(f"a message of {len(line)} bytes (at most {MAX_LINE_BYTES})")
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as err:
        raise WireError(f"not JSON ({err}): {line[:80]!r}") from None
    if not isinstance(message, dict):
        raise WireError(f"not a JSON object: {line[:80]!r}")
    _check(message)
    return message


def _check(message: dict[str, Any]) -> None:
    if message.get("v") != WIRE_VERSION:
        raise WireError(f"wire version {message.get('v')!r}, this side speaks {WIRE_VERSION} "
                        "(the worker and the real-time process come from different installs)")
    kind = message.get("type")
    if kind not in FIELDS:
        raise WireError(f"unknown message type {kind!r}")
    expected = FIELDS[kind]
    got = set(message) - {"v", "type"}
    if got != set(expected):
        raise WireError(f"{kind}: fields {sorted(got)}, expected {sorted(expected)}")
    for name, types in expected.items():
        value = message[name]
        if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            raise WireError(f"{kind}.{name}: {type(value).__name__} {value!r:.40}")


# --- what the messages carry -----------------------------------------------------------------------------


def note_fields(note: Note) -> list[int]:
    return [note.pitch, note.velocity, note.start_ticks, note.duration_ticks, note.channel]


def note_from(fields: list[Any]) -> Note:
    if len(fields) != 5 or not all(isinstance(x, int) and not isinstance(x, bool) for x in fields):
        raise WireError(f"note: five integers expected, got {fields!r:.60}")
    pitch, velocity, start, duration, channel = fields
    if not (0 <= pitch <= 127 and 1 <= velocity <= 127 and duration >= 1 and 0 <= channel <= 15):
        raise WireError(f"note: out of range {fields!r}")
    return Note(pitch, velocity, start, duration, channel)


def request_fields(request: RequestAnswer) -> dict[str, Any]:
    phrase = request.phrase
    return {"phrase": {"notes": [note_fields(n) for n in phrase.notes], "start_ticks": phrase.start_ticks,
                       "end_ticks": phrase.end_ticks, "bar_ticks": phrase.bar_ticks},
            "start_ticks": request.start_ticks, "end_ticks": request.end_ticks, "tag": request.tag,
            "seed": request.seed, "key": list(request.key) if request.key else None,
            "settings": jsonable(request.settings)}


def request_from(fields: dict[str, Any]) -> RequestAnswer:
    """The request back, checked: WireError names the field that is wrong."""
    try:
        phrase = fields["phrase"]
        key = fields["key"]
        ints: Callable[[str, dict[str, Any]], int] = lambda name, d: _int(d[name], name)  # noqa: E731
        return RequestAnswer(
            Phrase(tuple(note_from(n) for n in phrase["notes"]), ints("start_ticks", phrase),
                   ints("end_ticks", phrase), ints("bar_ticks", phrase)),
            ints("start_ticks", fields), ints("end_ticks", fields), str(fields["tag"]), ints("seed", fields),
            (int(key[0]), str(key[1])) if key else None, dict(fields["settings"]))
    except (KeyError, TypeError, IndexError, ValueError) as err:
        raise WireError(f"request: bad or missing field ({err!r})") from None


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireError(f"request.{name}: an integer expected, got {value!r:.40}")
    return value


_SCALARS = frozenset({int, float, str, bool, type(None)})


def jsonable(value: Any) -> Any:
    """Settings and pictures as JSON keep them: tuples become lists (the readers take both), anything else is
    refused. A UI's picture is read 20 times a second on a real-time thread: plain values and flat lists of
    them (the piano roll's notes) take the short way."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list or kind is tuple:
        if all(type(v) in _SCALARS for v in value):
            return list(value)
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # e.g. a preset's CC mappings
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise WireError(f"{type(value).__name__} {value!r:.40} cannot cross to another process")
