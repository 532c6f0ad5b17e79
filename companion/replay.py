"""Replaying a recorded take: what its JSON sidecar says each answer was played with, for `companion generate`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from companion.core.events import Note, Phrase, RequestAnswer
from companion.errors import InputFileError
from companion.recording import SIDECAR_FORMAT, SIDECAR_VERSION, _sha256


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


def read_sidecar(path: str | Path) -> Replay:
    """Read a take's sidecar; InputFileError naming the file if it is missing, not JSON or not a take."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such sidecar file; give the .json written beside a take") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputFileError(f"{path}: not a readable take sidecar ({err})") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise InputFileError(f"{path}: not a Companion take sidecar (no \"format\": \"{SIDECAR_FORMAT}\")")
    if data.get("version", 0) > SIDECAR_VERSION:
        raise InputFileError(f"{path}: written by a newer Companion (version {data.get('version')}); update Companion")
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
