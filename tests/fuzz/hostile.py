"""Hypothesis strategies for hostile inputs (Standard MIDI Files built byte by byte, from plausible to broken)
and the fixed budget every fuzz test runs on."""

from __future__ import annotations

import json
import struct

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz(examples: int) -> settings:
    """A fixed budget: derandomized (the same examples every run), no deadline (CI machines vary), no database.

    capsys and tmp_path are read or emptied inside each example, so sharing them across examples is safe."""
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


_DELTAS = st.integers(0, 19).flatmap(lambda n: st.sampled_from([0, 1, 10_000, 0x0FFFFFFF]) if n == 0
                                      else st.integers(0, 480))
_NOTES = st.builds(lambda status, ch, pitch, vel: bytes([status | ch, pitch, vel]),
                   st.sampled_from([0x80, 0x90]), st.integers(0, 15), st.integers(0, 127), st.integers(0, 127))
_META = st.one_of(
    st.builds(lambda t: b"\xff\x51\x03" + t.to_bytes(3, "big"), st.sampled_from([0, 1, 500_000, 0xFFFFFF])),
    st.builds(lambda n, d: b"\xff\x58\x04" + bytes([n, d, 24, 8]),
              st.sampled_from([0, 1, 3, 4, 32, 255]), st.sampled_from([0, 1, 2, 3, 7, 255])),
    st.builds(lambda sf, mi: b"\xff\x59\x02" + struct.pack("bB", sf, mi),
              st.sampled_from([-8, -7, 0, 3, 7, 8, 127]), st.sampled_from([0, 1, 2])),
    st.builds(lambda text: b"\xff\x03" + _varlen(len(text)) + text, st.binary(max_size=8)),
    st.just(b"\xff\x54\x05\x60\x00\x00\x00\x00"),  # SMPTE offset
)
_OTHER = st.one_of(_META, st.binary(min_size=1, max_size=4), st.just(b"\xf0\x03\x01\x02\xf7"),
                   st.sampled_from([bytes([0xC0, 5]), bytes([0xB0, 64, 127])]))
_EVENT = st.integers(0, 9).flatmap(lambda n: _OTHER if n == 0 else _NOTES)  # mostly notes, some of anything


@st.composite
def midi_tracks(draw: st.DrawFn) -> bytes:
    events = draw(st.lists(st.tuples(_DELTAS, _EVENT), max_size=24))
    body = b"".join(_varlen(delta) + event for delta, event in events)
    if draw(st.booleans()):
        body += b"\x00\xff\x2f\x00"
    length = len(body) if draw(st.integers(0, 19)) else draw(st.integers(0, 0xFFFFFFFF))
    return b"MTrk" + struct.pack(">I", length) + body


@st.composite
def midi_files(draw: st.DrawFn) -> bytes:
    """A file from MThd on: any type, a division that may be SMPTE or zero, tracks that may lie or be cut."""
    tracks = draw(st.lists(midi_tracks(), min_size=0, max_size=3))
    kind = draw(st.sampled_from([0, 1, 1, 2, 7]))
    count = len(tracks) if draw(st.integers(0, 9)) else draw(st.integers(0, 0xFFFF))
    division = draw(st.sampled_from([96, 480, 96, 480, 1, 0, 0x7FFF, 0xE728]))  # 0xE728: SMPTE 25 fps
    data = b"MThd" + struct.pack(">IHHH", 6, kind, count, division) + b"".join(tracks)
    cut = draw(st.integers(0, 12))
    return data[:-cut] if cut and cut < len(data) and draw(st.integers(0, 4)) == 0 else data


# --- documents: a valid one, and hostile values to put anywhere in it ---------------------------------------

HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, -1, 1, 127, 128, 2**31, 2**80, -(2**63), 10**9]),
    st.sampled_from([float("nan"), float("inf"), -0.0, 1e308, 0.5]), st.text(max_size=8),
    st.sampled_from([[], {}, [1, 2], [[[[[]]]]], {"a": {"b": {}}}, [60, 90, 0, 480, 0], "major"]),
)


def paths_of(document: object, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON-like document (keys and list indexes), the document itself first."""
    out = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            out += paths_of(value, (*prefix, key))
    elif isinstance(document, list):
        for i, value in enumerate(document):
            out += paths_of(value, (*prefix, i))
    return out


def replaced(document: object, path: tuple, value: object) -> object:
    """A copy of `document` with the value at `path` replaced."""
    if not path:
        return value
    copy = dict(document) if isinstance(document, dict) else list(document)  # type: ignore[call-overload]
    copy[path[0]] = replaced(copy[path[0]], path[1:], value) if path[1:] else value
    return copy


@st.composite
def mutations(draw: st.DrawFn, document: object) -> object:
    """`document` with one to three values replaced by hostile ones."""
    for _ in range(draw(st.integers(1, 3))):
        places = paths_of(document)
        document = replaced(document, draw(st.sampled_from(places[1:] or places)), draw(HOSTILE_VALUES))
    return document


def take_sidecar() -> dict:
    """A take's sidecar as the recorder writes it (two answers of a markov session in 4/4), for `--replay`."""
    phrase = {"start_ticks": 0, "end_ticks": 1920, "bar_ticks": 1920,
              "notes": [[60, 90, 0, 480, 0], [64, 90, 480, 480, 0], [67, 90, 960, 960, 0]]}
    settings = {"seed": 41, "temperature": 0.8, "beats_per_bar": 4, "beat_unit": 4, "key_lock": True}
    answers = [{"tag": f"answer-{i}", "seed": 41 + i, "start_ticks": 1920 * (2 * i + 1),
                "end_ticks": 1920 * (2 * i + 2), "key": [0, "major"], "phrase": phrase,
                "settings": {**settings, "style": "folk", "top_p": 0.95}, "generation_ms": 3.0} for i in range(2)]
    return {"format": "companion-take", "version": 1, "ppq": 480, "settings": settings,
            "extras": {"model": "markov", "style": "folk"}, "model": {"name": "markov", "checkpoint": None},
            "answers": answers, "midi_file": "take.mid"}


def preset_document() -> dict:
    """A preset as data (every table, a CC map and a bank), for `toml_text` and `mutations`."""
    return {"name": "Fuzz", "description": "a preset to break",
            "engine": {"mode": "call_response", "output_channel": 2, "silence_beats": 1.5, "meter": "3/4"},
            "model": {"generator": "auto", "style": "folk"},
            "sampling": {"temperature": 0.9, "seed": 3, "pitch_range": ["G3", "G5"]},
            "harmony": {"style": "chorale", "channels": [2, 3, 4]},
            "clock": {"bpm": 100}, "midi": {"thru": False, "quantize": "1/8"},
            "cc": {"channel": 1, "21": "temperature", "22": {"control": "density", "min": 1, "max": 8}},
            "bank": {"channel": 16, "0": "duet", "1": "trading-fours"}}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string takes JSON's escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return '""'  # None: TOML has no null


def toml_text(document: object) -> str:
    """A document as a preset file: top-level tables as [tables], everything else as `key = value`."""
    if not isinstance(document, dict):
        return f"value = {_toml_value(document)}\n"
    top = [f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in document.items() if not isinstance(v, dict)]
    tables = [f"[{json.dumps(str(k))}]\n" + "".join(f"{json.dumps(str(key))} = {_toml_value(v)}\n"
                                                    for key, v in table.items())
              for k, table in document.items() if isinstance(table, dict)]
    return "\n".join(top) + "\n\n" + "\n".join(tables)
