"""Replaying a recorded take: what its JSON sidecar says each answer was played with, for `companion generate`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from companion.core.events import PPQ, TICKS_PER_16TH, Note, Phrase, RequestAnswer
from companion.errors import InputFileError
from companion.files.reading import NotReadable, nesting_depth, read_bounded
from companion.takes.recording import SIDECAR_FORMAT, SIDECAR_VERSION, _sha256


@dataclass(frozen=True)
class Replay:
    """What a sidecar says a take was played with, for `companion generate --replay`."""

    path: Path
    midi_file: Path
    seed: int
    temperature: float
    model: str
    checkpoint: str | None
    checkpoint_sha256: str | None
    style: str | None
    response_bars: int | None
    settings: Mapping[str, Any]
    extras: Mapping[str, Any]
    answers: tuple[Mapping[str, Any], ...] = field(default=())

    def request_settings(self) -> dict[str, Any]:
        """Generator settings as the live answers had them (engine settings over the preset's extras)."""
        return {**self.extras, **self.settings}

    def checkpoint_warning(self) -> str | None:
        """A warning if the recorded checkpoint is gone or is not the same file any more."""
        if not self.checkpoint:
            return None
        digest = _sha256(self.checkpoint)
        if digest is None:
            return f"{self.path}: the take used checkpoint {self.checkpoint}, which is not there any more"
        if self.checkpoint_sha256 and digest != self.checkpoint_sha256:
            return f"{self.path}: checkpoint {self.checkpoint} changed since the take; answers may differ"
        return None

    def requests(self) -> list[RequestAnswer]:
        """Every recorded answer's request, in order: a fresh generator fed these plays the take's answers again."""
        out: list[RequestAnswer] = []
        for answer in self.answers:
            phrase = answer["phrase"]
            notes = tuple(Note(int(p), int(v), int(s), int(d), int(c)) for p, v, s, d, c in phrase["notes"])
            key = tuple(answer["key"]) if answer.get("key") else None
            out.append(RequestAnswer(
                Phrase(notes, int(phrase["start_ticks"]), int(phrase["end_ticks"]), int(phrase["bar_ticks"])),
                int(answer["start_ticks"]), int(answer["end_ticks"]), str(answer["tag"]), int(answer["seed"]),
                key, dict(answer.get("settings") or self.request_settings())))
        return out


MAX_SIDECAR_BYTES = 8 << 20
MAX_DEPTH = 8  # sidecar -> answers -> answer -> settings -> vae -> other -> note: 7
MAX_ANSWERS = 1_000  # an hour of answers every two bars at 120 BPM is 900
MAX_PHRASE_NOTES = 4_096
MAX_TICKS = 100_000 * PPQ  # as long a take as a MIDI file we read (midifile.MAX_FILE_BEATS)
MAX_ANSWER_BARS = 64 * 32  # response_bars 1..64; a morph plays up to 32 steps of a phrase
BAR_TICKS = range(TICKS_PER_16TH, 32 * 4 * PPQ // 2 + 1, TICKS_PER_16TH)  # meters 1/16 .. 32/2
SIDECAR_SETTINGS: dict[str, tuple[float, float]] = {  # what the generators read from an answer's settings
    "temperature": (1e-6, 5.0), "top_p": (1e-6, 1.0), "density": (0.25, 32.0), "beats_per_bar": (1, 32),
    "beat_unit": (2, 16), "morph_steps": (2, 32), "distance": (0.0, 1.0), "bars": (1, MAX_ANSWER_BARS),
    "steps": (2, 32), "seed": (0, 2**32),
}


class _Check:
    """The sidecar's values checked where the generators will read them; the first problem is an InputFileError
    naming the file, the field (answers[3].phrase.notes[2]) and what is allowed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, text: str) -> InputFileError:
        return InputFileError(f"{self.path}: {where} {text}; the sidecar is damaged: record the take again")

    def number(self, where: str, value: Any, low: float, high: float, whole: bool = True) -> None:
        kinds = int if whole else int | float
        if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
            raise self.fail(where, f"= {str(value)[:40]} is not a {'whole ' if whole else ''}number {low:g}..{high:g}")

    def items(self, where: str, value: Any, kind: type, most: int) -> Any:
        if not isinstance(value, kind):
            raise self.fail(where, f"is not a {'list' if kind is list else 'table'}")
        if len(value) > most:
            raise self.fail(where, f"holds {len(value)} items, more than the {most} a take holds")
        return value

    def notes(self, where: str, notes: Any) -> None:
        for i, note in enumerate(self.items(where, notes, list, MAX_PHRASE_NOTES)):
            if not isinstance(note, list) or len(note) not in (4, 5):
                raise self.fail(f"{where}[{i}]", "is not [pitch, velocity, start, duration(, channel)]")
            for field_name, value, low, high in zip(("pitch", "velocity", "start", "duration", "channel"), note,
                                                    (0, 0, 0, 1, 0), (127, 127, MAX_TICKS, MAX_TICKS, 15),
                                                    strict=False):
                self.number(f"{where}[{i}] {field_name}", value, low, high)

    def settings(self, where: str, settings: Any) -> None:
        for key, value in self.items(where, settings or {}, dict, 256).items():
            if key in SIDECAR_SETTINGS and value is not None:
                low, high = SIDECAR_SETTINGS[key]
                self.number(f"{where}.{key}", value, low, high, whole=isinstance(low, int))
            elif key == "pitch_range" and value is not None:
                self.items(f"{where}.{key}", value, list, 2)
                for i, pitch in enumerate(value):
                    self.number(f"{where}.{key}[{i}]", pitch, 0, 127)
            elif key == "vae" and value is not None:
                self.settings(f"{where}.vae", value)
                if "other" in value:
                    self.notes(f"{where}.vae.other", value["other"])
            elif key in ("style", "task", "op") and not isinstance(value, str | None):
                raise self.fail(f"{where}.{key}", "is not text")

    def answer(self, where: str, answer: Any) -> None:
        self.items(where, answer, dict, 64)
        phrase = self.items(f"{where}.phrase", answer.get("phrase"), dict, 16)
        bar = phrase.get("bar_ticks")
        if bar not in BAR_TICKS or isinstance(bar, bool):
            raise self.fail(f"{where}.phrase.bar_ticks", f"= {str(bar)[:40]} is not a bar of a meter we play")
        for owner, start, end, most in ((phrase, "start_ticks", "end_ticks", MAX_TICKS),
                                        (answer, "start_ticks", "end_ticks", MAX_ANSWER_BARS * bar)):
            self.number(f"{where}.{start}", owner.get(start), 0, MAX_TICKS)
            self.number(f"{where}.{end}", owner.get(end), owner[start] + (owner is answer), owner[start] + most)
        self.notes(f"{where}.phrase.notes", phrase.get("notes"))
        self.number(f"{where}.seed", answer.get("seed"), 0, 2**32)
        if not isinstance(answer.get("tag"), str) or len(answer["tag"]) > 200:
            raise self.fail(f"{where}.tag", "is not a short text")
        key = answer.get("key")
        if key is not None and (not isinstance(key, list) or len(key) != 2 or key[1] not in ("major", "minor")):
            raise self.fail(f"{where}.key", 'is not [tonic 0..11, "major" or "minor"]')
        if key is not None:
            self.number(f"{where}.key", key[0], 0, 11)
        self.settings(f"{where}.settings", answer.get("settings"))

    def sidecar(self, data: dict[str, Any]) -> None:
        for name in ("settings", "extras"):
            self.settings(name, data.get(name))
        model = self.items("model", data.get("model") or {}, dict, 16)
        for where, value in (("model.name", model.get("name")), ("model.checkpoint", model.get("checkpoint")),
                             ("model.checkpoint_sha256", model.get("checkpoint_sha256")),
                             ("extras.checkpoint", (data.get("extras") or {}).get("checkpoint")),
                             ("midi_file", data.get("midi_file"))):
            if value is not None and (not isinstance(value, str) or len(value) > 4096 or "\0" in value):
                raise self.fail(where, "is not a file name or a model name")
        answers = self.items("answers", data.get("answers") or [], list, MAX_ANSWERS)
        for i, answer in enumerate(answers):
            self.answer(f"answers[{i}]", answer)
        if sum(a["end_ticks"] - a["start_ticks"] for a in answers) > MAX_TICKS:
            raise self.fail("answers", f"last longer than {MAX_TICKS // PPQ} beats together, more than a take holds")


def read_sidecar(path: str | Path) -> Replay:
    """Read a take's sidecar and check every value we use (one place); InputFileError naming the file and the
    field if it is missing, not JSON, not a take, damaged or larger than a take can be."""
    path = Path(path)
    try:
        data = json.loads(read_bounded(path, MAX_SIDECAR_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such sidecar file; give the .json written beside a take") from None
    except NotReadable as err:
        raise InputFileError(f"{path}: {err}; give the .json written beside a take") from None
    except RecursionError:
        raise InputFileError(f"{path}: not a take sidecar (lists nested too deeply)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputFileError(f"{path}: not a readable take sidecar ({err})") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise InputFileError(f"{path}: not a Companion take sidecar (no \"format\": \"{SIDECAR_FORMAT}\")")
    version = data.get("version", 0)
    if not isinstance(version, int) or version > SIDECAR_VERSION:
        raise InputFileError(f"{path}: written by a newer Companion (version {str(version)[:20]}); update Companion")
    if nesting_depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise InputFileError(f"{path}: not a take sidecar (lists or tables nested too deeply)")
    _Check(path).sidecar(data)
    settings = data.get("settings") or {}
    extras = data.get("extras") or {}
    model = data.get("model") or {}
    try:
        return Replay(
            path=path, midi_file=path.with_name(str(data.get("midi_file", path.with_suffix(".mid").name))),
            seed=int(settings.get("seed", data.get("seed") or 0)),
            temperature=float(settings.get("temperature", 1.0)),
            model=str(model.get("name") or extras.get("model") or "auto"),  # what played, not what was asked
            checkpoint=model.get("checkpoint") or extras.get("checkpoint"),
            checkpoint_sha256=model.get("checkpoint_sha256"),
            style=extras.get("style"),
            response_bars=settings.get("response_bars"),
            settings=settings, extras=extras, answers=tuple(data.get("answers") or ()),
        )
    except (TypeError, ValueError) as err:
        raise InputFileError(f"{path}: a value in the sidecar is damaged ({err})") from None


def replay_overrides(path: str | Path) -> dict[str, Any]:
    """The `companion generate` options a sidecar sets: seed, temperature, model, style, bars, settings."""
    replay = read_sidecar(path)
    model = replay.model if replay.model in ("auto", "markov", "transformer") else "auto"
    return {"seed": replay.seed, "temperature": replay.temperature, "model": model, "style": replay.style,
            "bars": replay.response_bars, "settings": replay.request_settings()}
