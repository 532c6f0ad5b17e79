"""The preset schema: every table and key with its type, default, allowed values and where it goes."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from companion.core.control import HARMONY_STYLES
from companion.core.drums import DRUM_STYLES
from companion.core.events import PPQ
from companion.core.settings import CADENCES, CHANGE_EVERY, SEED_MAX
from companion.core.theory import Key

# Modes the schema accepts. A mode also has to be built (a module under companion/core/modes) to run;
# names of modes still being written are valid in a file so a set can be prepared ahead.
KNOWN_MODES = ("call_response", "harmonize", "duet", "variation", "morph", "generate", "drums", "drum_answers")
STYLES = ("folk", "chorale", "renaissance", "classical", "user")
QUANTIZE_GRIDS = {"off": 0, "1/4": PPQ, "1/8": PPQ // 2, "1/8t": PPQ // 3, "1/16": PPQ // 4, "1/16t": PPQ // 6}
_NOTE_NAME = re.compile(r"^([A-Ga-g])([#b]?)(-?\d)$")
_PITCH_CLASS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


class Invalid(ValueError):
    """A value does not fit its key; the text says what was expected."""


@dataclass(frozen=True)
class Field:
    """One key of a table: how it is read (`kind`), its default, its range, and where the value goes.

    `target` is "engine.<EngineSettings field>", "extra.<generator setting>" or "clock.<option>".
    `none` is the word (if any) that means "not set" (TOML has no null), e.g. "omni" or "none".
    """

    kind: str  # int | float | bool | choice | channel | note | notes | channels | meter | key | text | path
    default: Any
    doc: str
    target: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    none: str | None = None

    def allowed(self) -> str:
        """The allowed values, in words, for messages and the docs."""
        base = {
            "int": f"a whole number {_num(self.low)}..{_num(self.high)}",
            "float": (f"a number above {_num(self.low)}" if self.low_open else f"a number from {_num(self.low)}")
            + f" up to {_num(self.high)}",
            "bool": "true or false",
            "choice": "one of " + ", ".join(f'"{c}"' for c in self.choices),
            "channel": "a MIDI channel 1..16",
            "note": 'a MIDI note 0..127 or a note name such as "C4" (middle C = 60)',
            "notes": 'a list of two notes [low, high], e.g. [48, 84] or ["C3", "C6"]',
            "channels": "a list of 1 to 3 MIDI channels 1..16, e.g. [2, 3, 4]",
            "meter": 'a time signature "N/D": N 1..32 beats, D 2, 4, 8 or 16',
            "key": 'a key such as "D minor", "Bb major" or "F# dorian"',
            "text": "text",
            "path": "a file path (relative to the preset file)",
        }[self.kind]
        return f'{base}, or "{self.none}"' if self.none else base


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _f(kind: str, default: Any, target: str, doc: str, **kw: Any) -> Field:
    return Field(kind, default, doc, target, **kw)


SCHEMA: dict[str, dict[str, Field]] = {
    "engine": {
        "mode": _f("choice", "call_response", "engine.mode", "what Companion does", choices=KNOWN_MODES),
        "input_channel": _f("channel", None, "engine.input_channel", "listen to this channel only", none="omni"),
        "output_channel": _f("channel", 1, "engine.output_channel", "channel Companion plays on"),
        "silence_beats": _f("float", 1.5, "engine.silence_beats",
                            "the phrase ends after this many beats with every key and the pedal up",
                            low=0, high=64, low_open=True),
        "max_bars": _f("int", 4, "engine.max_bars", "the phrase also ends after this many bars", low=1, high=64,
                       none="none"),
        "trigger_cc": _f("int", None, "engine.trigger_cc", "a controller (foot switch) whose value >= 64 ends the "
                         "phrase at once", low=0, high=127, none="none"),
        "trigger_note": _f("note", None, "engine.trigger_note", "a note that ends the phrase at once (not played)",
                           none="none"),
        "response_start": _f("choice", "bar", "engine.response_start", "the answer starts on the next bar or beat",
                             choices=("bar", "beat")),
        "response_bars": _f("int", 2, "engine.response_bars", "length of each answer in bars", low=1, high=64),
        "length_bars": _f("int", 0, "engine.length_bars", "generate mode: the piece stops after this many bars "
                          "(0: plays until stopped)", low=0, high=512),
        "lead_ticks": _f("int", PPQ // 4, "engine.lead_ticks", f"at least this many ticks ({PPQ} per quarter) "
                         "between the phrase end and the answer", low=0, high=4 * PPQ),
        "on_player_resume": _f("choice", "stop", "engine.on_player_resume", "when you play during an answer: stop "
                               "it or duck it (softer)", choices=("stop", "duck")),
        "key_lock": _f("bool", True, "engine.key_lock", "keep answers (and harmony) in the key"),
        "key": _f("key", None, "engine.key", "the key the key lock keeps to; \"auto\": the key detected from "
                  "your playing", none="auto"),
        "meter": _f("meter", "4/4", "engine.meter", "time signature"),
    },
    "model": {
        "generator": _f("choice", "auto", "extra.model", "auto: the Transformer if it loads, else Markov",
                        choices=("auto", "markov", "transformer")),
        "checkpoint": _f("path", None, "extra.checkpoint", "a checkpoint file instead of the shipped one",
                         none="none"),
        "style": _f("choice", "folk", "extra.style", "style the model plays in", choices=STYLES),
    },
    "sampling": {
        "temperature": _f("float", 1.0, "engine.temperature", "below 1 closer to what you played, above 1 bolder",
                          low=0, high=5, low_open=True),
        "top_p": _f("float", 0.95, "extra.top_p", "nucleus sampling: keep the likeliest notes up to this mass",
                    low=0, high=1, low_open=True),
        "seed": _f("int", 0, "engine.seed", "answer n uses seed + n: a session replays identically",
                   low=0, high=SEED_MAX),
        "density": _f("float", None, "extra.density", "notes per bar to aim for", low=0.25, high=32,
                      none="auto"),
        "pitch_range": _f("notes", None, "extra.pitch_range", "lowest and highest note of the answers",
                          none="full"),
    },
    "harmony": {
        "style": _f("choice", "chorale", "engine.harmony_style", "chorale: the four-part chorale model; pad, block, "
                    "bass, comping, arpeggio: the lead-sheet chord model's symbols voiced so", choices=HARMONY_STYLES),
        "register": _f("choice", "middle", "engine.pad_low_note", "where the harmony sits",
                       choices=("low", "middle", "high")),
        "change_every": _f("choice", "beat", "engine.change_every",
                           "chords change at most this often, or where the melody asks (\"melody\", lead-sheet "
                           "styles); a melody note that clashes re-voices at once", choices=CHANGE_EVERY),
        "cadences": _f("choice", "home", "engine.cadences", "home: a whole melody's every phrase end is drawn to the "
                       "tonic chord; melody: only where it ends on the tonic's root or third (half cadences kept)",
                       choices=CADENCES),
        "channels": _f("channels", None, "engine.harmony_channels", "channels of the voices (alto, tenor, bass; "
                       "lead-sheet styles: chords, -, bass), or one channel for all", none="output"),
    },
    "variation": {
        "distance": _f("float", 0.3, "extra.distance", "0 nearly the same phrase, 1 a stranger", low=0, high=1),
        "morph_steps": _f("int", 4, "engine.morph_steps", "steps of a morph between two phrases", low=2, high=32),
    },
    "drums": {  # the drums and drum_answers modes (companion/worker/drum_voice.py reads these extras)
        "style": _f("choice", "rock", "extra.drum_style", "style the drummer plays", choices=DRUM_STYLES),
        "density": _f("float", 0.5, "extra.drum_density", "how busy the drums are; the player's density moves it",
                      low=0, high=1),
        "fill_rate": _f("float", 0.75, "extra.drum_fill_rate", "chance of a fill on the last bar of a phrase",
                        low=0, high=1),
        "swing": _f("float", 0.0, "extra.drum_swing", "0 straight, 1 triplet swing of the off 16ths", low=0, high=1),
        "humanize": _f("float", 1.0, "extra.drum_humanize", "0 on the grid, 1 the model's own micro-timing",
                       low=0, high=1),
        "mute": _f("bool", False, "extra.drum_mute", "silence the drummer (it keeps time)"),
        "channel": _f("channel", 10, "extra.drum_channel", "channel the drums play on"),
    },
    "clock": {
        "source": _f("choice", "internal", "clock.source",
                     "internal clock, follow the DAW's MIDI clock, or join an Ableton Link session",
                     choices=("internal", "external", "link")),
        "bpm": _f("float", None, "clock.bpm", "tempo of the internal clock (left out: the running tempo stays)",
                  low=20, high=400),
        "send": _f("bool", False, "clock.send", "send MIDI clock to the DAW (internal clock or Link)"),
        "start_stop": _f("bool", True, "clock.start_stop", "with Link: follow the session's start and stop"),
    },
    "midi": {
        "thru": _f("bool", False, "engine.thru", "echo your notes to the output"),
        "thru_channel": _f("channel", None, "engine.thru_channel", "channel of the echoed notes", none="output"),
        "quantize": _f("choice", "off", "extra.quantize", "snap Companion's note starts to this grid",
                       choices=tuple(QUANTIZE_GRIDS)),
        "humanize": _f("float", 0.0, "extra.humanize", "looseness of Companion's timing and velocity", low=0, high=1),
        "velocity_curve": _f("choice", "linear", "extra.velocity_curve", "shape of Companion's velocities",
                             choices=("linear", "soft", "hard", "fixed")),
        "fixed_velocity": _f("int", 100, "extra.fixed_velocity", 'velocity when velocity_curve = "fixed"',
                             low=1, high=127),
    },
}
TOP_LEVEL = {"name": "display name (default: the file name)", "description": "one line shown in the preset list"}
SPECIAL_TABLES = ("cc", "bank")
ALL_TABLES = (*SCHEMA, *SPECIAL_TABLES)


def did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str:
    """ ' did you mean "x"?' for the closest option, or ''."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f' did you mean "{close[0]}"?' if close else ""


def show(value: Any) -> str:
    """A value as it would be written in TOML, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def type_word(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def note_number(value: Any) -> int:
    """A MIDI note from 0..127 or a name like "C4", "F#3", "Bb2" (C4 = 60)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 127:
            return value
        raise Invalid("out of range")
    if isinstance(value, str):
        match = _NOTE_NAME.match(value.strip())
        if match:
            letter, accidental, octave = match.groups()
            number = 12 * (int(octave) + 1) + _PITCH_CLASS[letter.lower()] + {"#": 1, "b": -1, "": 0}[accidental]
            if 0 <= number <= 127:
                return number
        raise Invalid("not a note name")
    raise Invalid(f"is {type_word(value)}")


def _coerce_number(field: Field, value: Any) -> int | float:
    whole = field.kind == "int"
    if isinstance(value, bool) or not isinstance(value, int | float) or (whole and not isinstance(value, int)):
        raise Invalid(f"is {type_word(value)}")
    low_ok = field.low is None or (value > field.low if field.low_open else value >= field.low)
    if not low_ok or (field.high is not None and value > field.high):
        raise Invalid("is out of range")
    return int(value) if whole else float(value)


def _coerce_channel(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"is {type_word(value)}")
    if not 1 <= value <= 16:
        raise Invalid("is out of range")
    return value - 1  # on the wire: 0..15


def _coerce_list(value: Any, lengths: range, item: Callable[[Any], int]) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise Invalid(f"is {type_word(value)}")
    if len(value) not in lengths:
        raise Invalid(f"has {len(value)} item(s)")
    return tuple(item(v) for v in value)


def coerce(field: Field, value: Any, base_dir: Path | None = None) -> Any:
    """The value in the form its target wants (channels 0-based, notes as numbers...); Invalid if it does not fit."""
    if field.none is not None and value == field.none:
        return None
    kind = field.kind
    if kind in ("int", "float"):
        return _coerce_number(field, value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise Invalid(f"is {type_word(value)}")
        return value
    if kind in ("choice", "text", "meter", "key", "path") and not isinstance(value, str):
        raise Invalid(f"is {type_word(value)}")
    if kind == "choice":
        if value not in field.choices:
            hint = did_you_mean(value, field.choices).strip()
            raise Invalid(f"is not allowed ({hint})" if hint else "is not allowed")
        return value
    if kind == "text":
        return value
    if kind == "channel":
        return _coerce_channel(value)
    if kind == "note":
        return note_number(value)
    if kind == "notes":
        low, high = _coerce_list(value, range(2, 3), note_number)
        if low >= high:
            raise Invalid("has its low note not below its high note")
        return (low, high)
    if kind == "channels":
        return _coerce_list(value, range(1, 4), _coerce_channel)
    if kind == "meter":
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
        if not match or not 1 <= int(match.group(1)) <= 32 or int(match.group(2)) not in (2, 4, 8, 16):
            raise Invalid("is not a time signature we can play")
        return (int(match.group(1)), int(match.group(2)))
    if kind == "key":
        try:
            return Key.parse(value).name
        except ValueError as err:
            raise Invalid(f"is not a key ({err})") from None
    if kind == "path":
        if not value.strip():
            return None
        path = Path(value).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise Invalid(f"names a file that does not exist ({path})")
        return str(path)
    raise AssertionError(f"unknown field kind {kind}")


def default_value(spec: Field) -> Any:
    """The default in the form its target wants (the schema writes defaults as a preset file would)."""
    return None if spec.default is None else coerce(spec, spec.default)


def to_toml_value(field: Field, value: Any) -> Any:
    """The inverse of `coerce`: a target value as it is written in a preset file."""
    if value is None:
        return field.none if field.none is not None else ""
    if field.kind == "channel":
        return value + 1
    if field.kind == "channels":
        return [v + 1 for v in value]
    if field.kind == "notes":
        return list(value)
    if field.kind == "meter":
        return f"{value[0]}/{value[1]}" if isinstance(value, tuple | list) else str(value)
    return value
