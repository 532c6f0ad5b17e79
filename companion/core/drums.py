"""The drummer's musical decisions, pure: what the player's bar says (accents, density, loudness), which bars are
fills, and a generated bar turned into notes on the drum channel (swing and humanize applied). Used live by the
drums mode and offline by `companion generate drums`; the model itself lives in models/drums/.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from companion.core.events import TICKS_PER_16TH, Note

STEPS_PER_MODEL_BAR = 16  # the model makes 4/4 bars of 16 steps
DRUM_CHANNEL = 9  # channel 10 on the wire
HIT_TICKS = TICKS_PER_16TH // 2  # drum notes are short: a 32nd
# General MIDI notes of the model's nine pieces (models/drums/bars.py PIECE_NOTES, in the same order)
PIECE_NOTES = (36, 38, 42, 46, 45, 48, 50, 49, 51)
DRUM_STYLES = ("rock", "funk", "jazz", "latin", "hiphop", "soul", "afrocuban", "punk", "neworleans", "country",
               "pop", "reggae", "other")
PLAYER_QUIET_DENSITY = 0.45  # drum density when the player plays no notes (a plain groove)
Hit = tuple[int, int, float, float]  # (piece, step, velocity 0..1, offset in steps)


@dataclass(frozen=True, slots=True)
class DrumFeel:
    """How the drummer plays: density 0..1 (its own, before the player's), fill_rate 0..1 (chance of a fill at a
    phrase end), swing 0..1 (0 straight, 1 triplet swing of the off 16ths), humanize 0..1 (0 on the grid, 1 the
    model's own micro-timing), mute."""

    style: str = "rock"
    density: float = 0.5
    fill_rate: float = 0.75
    swing: float = 0.0
    humanize: float = 1.0
    mute: bool = False
    channel: int = DRUM_CHANNEL
    phrase_bars: int = 4

    def __post_init__(self) -> None:
        if self.style not in DRUM_STYLES:
            raise ValueError(f"drum style must be one of {', '.join(DRUM_STYLES)}, got {self.style!r}")
        for name in ("density", "fill_rate", "swing", "humanize"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"drum {name} must be a number 0..1, got {value!r}")
        if not isinstance(self.channel, int) or not 0 <= self.channel <= 15:
            raise ValueError(f"drum channel must be 0..15 (10 on the wire is 9), got {self.channel!r}")
        if not isinstance(self.phrase_bars, int) or not 1 <= self.phrase_bars <= 64:
            raise ValueError(f"drum phrase_bars must be a whole number 1..64, got {self.phrase_bars!r}")


@dataclass(frozen=True, slots=True)
class PlayerBar:
    """What the player did in one bar: onset velocity per 16th step (0..1, 0 = none), note count, mean velocity."""

    taps: tuple[float, ...]
    notes: int
    velocity: float  # 0..1, 0 when no notes

    @property
    def played(self) -> bool:
        return self.notes > 0


def player_bar(notes: Iterable[Note], bar_start_ticks: int, bar_ticks: int) -> PlayerBar:
    """The player's notes that start in [bar_start, bar_start + bar_ticks) as a PlayerBar of 16 steps."""
    taps = [0.0] * STEPS_PER_MODEL_BAR
    count, total = 0, 0
    for n in notes:
        rel = n.start_ticks - bar_start_ticks
        if not 0 <= rel < bar_ticks:
            continue
        count += 1
        total += n.velocity
        step = min(STEPS_PER_MODEL_BAR - 1, (rel + TICKS_PER_16TH // 2) // TICKS_PER_16TH)
        taps[step] = max(taps[step], n.velocity / 127.0)
    return PlayerBar(tuple(taps), count, total / count / 127.0 if count else 0.0)


def drum_density(feel: DrumFeel, player: PlayerBar | None) -> float:
    """The density asked of the model: the feel's own, moved up or down by how busy the player is (8 notes a
    bar is neutral)."""
    if player is None or not player.played:
        return feel.density
    busy = min(player.notes, 16) / 8.0 - 1.0  # -1 (one note) .. +1 (16 notes)
    return min(1.0, max(0.05, feel.density + 0.25 * busy))


def drum_velocity(player: PlayerBar | None, default: float = 0.6) -> float:
    """The mean hit velocity asked of the model: the player's own loudness, else `default`."""
    return player.velocity if player is not None and player.played else default


def is_phrase_end(bar_index: int, phrase_bars: int) -> bool:
    """Whether bar `bar_index` (0 = the drummer's first) is the last bar of a `phrase_bars`-bar phrase."""
    return bar_index % phrase_bars == phrase_bars - 1


def bar_plan(bar_index: int, phrase_end: bool, player: PlayerBar | None, player_before: PlayerBar | None,
             feel: DrumFeel, seed: int, section_end: bool = False) -> tuple[tuple[float, ...] | None, bool]:
    """(the taps to follow, None for none; whether it is a fill) for one bar, given what the player played in
    the bar that conditions it and the bar before: a fill on a phrase's last bar at the feel's fill rate, always
    on a section's last bar, and a break (a fill with no taps) on the first bar the player stops."""
    stopped = player_before is not None and player_before.played and (player is None or not player.played)
    taps = player.taps if player is not None and player.played else None
    chance = random.Random(seed * 7919 + bar_index).random() < feel.fill_rate
    return taps, stopped or section_end or (phrase_end and chance)


def bar_notes(hits: Sequence[Hit], bar_start_ticks: int, bar_ticks: int, feel: DrumFeel) -> list[Note]:
    """A generated bar's hits as notes from `bar_start_ticks`, on the feel's channel, in time order.

    Hits past the bar's end (a 3/4 bar takes the first 12 steps) are dropped; offsets are scaled by `humanize`,
    off 16ths pushed late by `swing` (1 = a triplet feel); nothing starts before the bar line or after its end.
    """
    out: list[Note] = []
    for piece, step, velocity, offset in hits:
        position = step + offset * feel.humanize
        if step % 2 == 1:
            position += feel.swing / 3.0
        start = bar_start_ticks + round(position * TICKS_PER_16TH)
        start = min(max(start, bar_start_ticks), bar_start_ticks + bar_ticks - 1)
        if step * TICKS_PER_16TH >= bar_ticks:
            continue
        out.append(Note(PIECE_NOTES[piece], max(1, min(127, round(velocity * 127))), start, HIT_TICKS, feel.channel))
    out.sort(key=lambda n: (n.start_ticks, n.pitch))
    return out
