"""`companion generate harmonize` with a lead-sheet style: the chord model reads the whole melody first (it may
look ahead) and plans a chord per beat; the live worker then plays that plan in the style, and each chord
change is written as a marker (the chord symbol) where it happens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from companion.core.events import TICKS_PER_16TH, Note
from companion.core.settings import EngineSettings
from companion.core.theory import Key
from companion.harmony.chord_styles import bar_steps, slot_steps

Plan = dict[int, int]  # slot index (from tick 0) -> chord class


def melody_grid(melody: Sequence[Note]) -> np.ndarray:
    """(T,) the melody pitch sounding at each 16th step from tick 0 (-1: rest)."""
    end = max(n.end_ticks for n in melody)
    grid = np.full(end // TICKS_PER_16TH + 1, -1, dtype=np.int64)
    for n in melody:
        a = (n.start_ticks + TICKS_PER_16TH // 2) // TICKS_PER_16TH
        b = max(a + 1, (n.end_ticks + TICKS_PER_16TH // 2) // TICKS_PER_16TH)
        grid[a:b] = n.pitch
    return grid


MINOR_MODES = ("minor", "harmonic_minor", "melodic_minor", "dorian", "phrygian", "minor_pentatonic")


def key_pair(key_name: str | None, melody: np.ndarray) -> tuple[int, str]:
    """(tonic pc, "major" | "minor") for the chord model: the set key, else the one estimated from the whole
    melody (models.chords.features.melody_key: its last note counts)."""
    if key_name is not None:
        key = Key.parse(key_name)
        return key.tonic_pc, "minor" if key.mode in MINOR_MODES else "major"
    from models.chords.features import melody_key

    return melody_key(melody)


def set_mode(settings: EngineSettings) -> str | None:
    """The mode of the preset's key ("major" | "minor"), None when no key is set (live, it is then guessed)."""
    if settings.key is None:
        return None
    return "minor" if Key.parse(settings.key).mode in MINOR_MODES else "major"


def chord_plan(stepper: Any, melody: Sequence[Note], settings: EngineSettings) -> Plan:
    """A chord per slot for the whole melody (models.chords.decode.decode_offline; `change_every`, `cadences` kept)."""
    from models.chords.decode import decode_offline

    grid = melody_grid(melody)
    per_slot = slot_steps(settings)
    per_bar = max(1, bar_steps(settings) // per_slot)
    n_slots = -(-len(grid) // per_slot)
    grid = np.concatenate([grid, np.full(n_slots * per_slot - len(grid), -1)])
    slot_pos = (np.arange(n_slots) % per_bar).astype(np.int8)
    chords = decode_offline(stepper, grid, slot_pos, per_slot, key_pair(settings.key, grid), settings.change_every,
                            settings.cadences)
    return {s: int(c) for s, c in enumerate(chords)}


def symbol_markers(changes: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """(tick, chord symbol) at each change, a repeat of the symbol sounding left out."""
    out: list[tuple[int, str]] = []
    for ticks, name in sorted(changes, key=lambda c: c[0]):
        if not out or out[-1][1] != name:
            out.append((ticks, name))
    return out
