"""`companion generate generate`: a piece from nothing but a style, tempo and length, through the live mode's spans."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from companion.core.engine import EngineSettings
from companion.core.events import Note, RequestAnswer
from companion.core.modes.base import ModeContext
from companion.core.modes.generate import GenerateMode
from companion.errors import InputFileError, check_range
from companion.files.midifile import COMPANION_TRACK, write_take
from companion.worker.generators import Generator, make_generator

log = logging.getLogger("companion")

MAX_BARS = 256  # --bars: 1..256, a long piece but not an accidental hour of music
DEFAULT_BPM = 120.0


def _engine_settings(seed: int, settings: Mapping[str, Any]) -> tuple[EngineSettings, dict[str, Any]]:
    """Split `settings` into engine settings and the generator's extras (style, top_p, density...)."""
    known = {f.name for f in dataclasses.fields(EngineSettings)}
    engine = {k: v for k, v in settings.items() if k in known and k not in ("mode", "seed")}
    extras = {k: v for k, v in settings.items() if k not in known}
    try:
        return EngineSettings(mode="generate", seed=seed, **engine), extras
    except (TypeError, ValueError) as err:
        raise InputFileError(f"generate: bad setting: {err}") from None


def check_bars(bars: int) -> None:
    """--bars of every `companion generate` mode: a UsageError naming the flag and its range."""
    check_range("--bars", bars, 1, MAX_BARS, " (the length of the generated part)")


def generate_file(*, bars: int, seed: int, style: str | None = "folk", bpm: float = DEFAULT_BPM,
                  settings: Mapping[str, Any] | None = None, model: str = "auto",
                  generator: Generator | None = None) -> list[Note]:
    """The notes of a `bars`-bar piece from tick 0, span by span exactly as the live generate mode asks for them.

    `bpm` only checks the tempo the caller will write (the notes are in ticks); `generator` replaces the one
    `model` names ("auto": the Transformer when its checkpoint loads, else the Markov responder).
    UsageError (exit 2) for a bad length or tempo, InputFileError for a bad setting.
    """
    check_bars(bars)
    check_range("--bpm", bpm, 20.0, 400.0)
    engine_settings, extras = _engine_settings(seed, settings or {})
    if generator is None:
        generator, warning = make_generator(model)
        if warning:
            log.warning(warning)
    counter = itertools.count(1)
    ctx = ModeContext(engine_settings, None, engine_settings.beat_ticks, engine_settings.bar_ticks,
                      lambda: next(counter))
    mode = GenerateMode(style=style, length_bars=bars, lead_beats=0)
    notes: list[Note] = []
    # The mode asks for span k + 1 when span k starts: ticking it on every bar line replays the live plan.
    for bar in range(bars + 2):
        for command in mode.tick(bar * ctx.bar_ticks, ctx):
            if isinstance(command, RequestAnswer):
                request = dataclasses.replace(command, settings={**extras, **command.settings})
                try:
                    notes.extend(generator.stream(request))
                except ValueError as err:  # the model refuses a setting (e.g. a style it does not know)
                    raise InputFileError(f"generate: {err}") from None
    notes.sort(key=lambda n: (n.start_ticks, n.pitch))
    return notes


def write_generated(path: str | Path, notes: list[Note], *, bpm: float = DEFAULT_BPM, beats_per_bar: int = 4,
                    beat_unit: int = 4) -> Path:
    """A type-1 file: the tempo track (tempo, meter), then the generated notes on the `companion` track."""
    return write_take(path, [(COMPANION_TRACK, notes)], bpm, beats_per_bar, beat_unit)
