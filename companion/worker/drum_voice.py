"""The bridge to the drum GAN (models/drums): a bar's conditions in, the bar's notes out; torch loaded lazily.

Live, the drums modes ask for each bar with a RequestAnswer whose settings carry `drums` (the bar's index and the
player's bars); the generator worker calls `DrumGenerator.stream`, off every timing thread. Offline,
`companion generate drums` calls `DrumGenerator.bar` directly. Both give the same bar for the same conditions and seed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from companion.core.drums import (
    STEPS_PER_MODEL_BAR,
    DrumFeel,
    Hit,
    PlayerBar,
    bar_notes,
    bar_plan,
    drum_density,
    drum_velocity,
)
from companion.core.events import Note, RequestAnswer

DEFAULT_BPM = 110.0  # a request that does not say its tempo
FEEL_KEYS = ("style", "density", "fill_rate", "swing", "humanize", "mute", "channel")


@dataclass(frozen=True, slots=True)
class DrumAsk:
    """What one bar should be: style, tempo, the player's taps (None: the drummer plays alone), density and
    mean velocity 0..1, fill, and the feel that turns the hits into notes."""

    feel: DrumFeel
    bpm: float
    taps: tuple[float, ...] | None
    density: float
    velocity: float
    fill: bool


@dataclass(frozen=True, slots=True)
class BarPlan:
    """What the voice made of a live bar: its request, where it starts, whether it was a fill, whether it
    followed the player's taps (kept for the snapshot and the tests)."""

    tag: str
    start_ticks: int
    fill: bool
    followed_taps: bool


class DrumGenerator:
    """The drum GAN of a checkpoint (the shipped one by default); ImportError/OSError/ValueError if unavailable."""

    name = "drums"

    def __init__(self, checkpoint: str | Path | None = None) -> None:
        from models.drums.model import load_drum_model

        self._model = load_drum_model(checkpoint)
        self.checkpoint = self._model.path
        self.plans: deque[BarPlan] = deque(maxlen=256)  # the latest live bars (written by the worker thread only)

    def hits(self, ask: DrumAsk, seed: int, temperature: float = 1.0, feel_seed: int | None = None) -> list[Hit]:
        """One model bar's hits (piece, step, velocity, offset), in time order; the bars of one `feel_seed` (a
        session's, a file's) keep a looseness near their own, as one drummer does."""
        import numpy as np

        from models.drums.bars import STYLES, Bar
        from models.drums.gan import Conditions

        taps = np.array([ask.taps if ask.taps is not None else (0.0,) * STEPS_PER_MODEL_BAR], dtype=np.float32)
        cond = Conditions(style=np.array([STYLES.index(ask.feel.style)]), bpm=np.array([ask.bpm]), taps=taps,
                          taps_given=np.array([float(ask.taps is not None)]), density=np.array([ask.density]),
                          velocity=np.array([ask.velocity]), fill=np.array([float(ask.fill)]))
        bars = self._model.generate(cond, seed=seed, temperature=temperature, feel_seed=feel_seed)
        return Bar(bars.hits[0], bars.velocity[0], bars.offset[0]).hit_list()

    def bar(self, ask: DrumAsk, bar_start_ticks: int, bar_ticks: int, seed: int,
            temperature: float = 1.0, feel_seed: int | None = None) -> list[Note]:
        """The notes of one bar from `bar_start_ticks` (muted: none)."""
        if ask.feel.mute:
            return []
        return bar_notes(self.hits(ask, seed, temperature, feel_seed), bar_start_ticks, bar_ticks, ask.feel)

    def stream(self, request: RequestAnswer) -> Iterator[Note]:
        """A live drums request (the drums and drum_answers modes): one bar per bar line of its span, the feel from
        the preset's [drums] extras, the conditions from the player's bars the mode read."""
        d = request.settings["drums"]
        feel = feel_from_settings(request.settings)
        player = _player(d.get("player"))
        before = _player(d.get("before"))
        bpm = float(request.settings.get("bpm") or DEFAULT_BPM)
        temperature = float(request.settings.get("temperature") or 1.0)
        base_seed = int(request.settings.get("seed") or 0)
        bar_ticks = request.phrase.bar_ticks
        start, k = request.start_ticks, 0
        while start < request.end_ticks:
            if d.get("answer"):  # a break answering the player's call, on its accents
                taps, fill = (player.taps if player is not None and player.played else None), True
            else:
                taps, fill = bar_plan(int(d["bar_index"]) + k, bool(d.get("phrase_end")), player, before, feel,
                                      base_seed, bool(d.get("section_end")))
            ask = DrumAsk(feel, bpm, taps, drum_density(feel, player), drum_velocity(player), fill)
            self.plans.append(BarPlan(request.tag, start, fill, taps is not None))
            yield from self.bar(ask, start, min(bar_ticks, request.end_ticks - start), request.seed + k, temperature,
                                feel_seed=base_seed)
            start += bar_ticks
            k += 1


def _player(d: dict[str, Any] | None) -> PlayerBar | None:
    if d is None:
        return None
    return PlayerBar(tuple(float(t) for t in d["taps"]), int(d["notes"]), float(d["velocity"]))


def feel_from_settings(settings: dict[str, Any]) -> DrumFeel:
    """The feel in a request's settings: the preset's [drums] table and the live controls (drum_* extras)."""
    changes = {name: settings[f"drum_{name}"] for name in FEEL_KEYS if settings.get(f"drum_{name}") is not None}
    return DrumFeel(**changes)
