"""Harmony voicing, pure: the model's alto, tenor and bass -> notes per style; when a held chord must give way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Voices = tuple[int | None, int | None, int | None]
NoteKey = tuple[int, int]  # (channel, pitch) of a sounding harmony note


def voice_notes(settings: Any, soprano: int, voices: Voices) -> list[NoteKey]:
    """The harmony notes (channel, pitch) for one chord in the style of `settings` (an EngineSettings)."""
    alto, tenor, bass = voices
    out = settings.output_channel
    channels = settings.harmony_channels or (out, out, out)
    style = settings.harmony_style
    if style == "chorale":
        notes = [(c, p) for c, p in zip(channels, voices, strict=True) if p is not None]
    elif style == "bass":
        notes = [(channels[2], bass)] if bass is not None else []
    else:
        pcs = list(dict.fromkeys(p % 12 for p in (bass, tenor, alto) if p is not None))
        if style == "block":
            # close position under the melody; a thin chord doubles the melody an octave down (locked hands)
            below = [soprano - ((soprano - pc) % 12 or 12) for pc in pcs if pc != soprano % 12]
            if len(below) < 3:
                below.append(soprano - 12)
            notes = [(out, p) for p in sorted(below)]
        else:  # pad: the bass's pitch class at the bottom of the register, the rest close above it
            if len(pcs) < 3 and soprano % 12 not in pcs:
                pcs.append(soprano % 12)
            if not pcs:
                return []
            low = settings.pad_low_note + (pcs[0] - settings.pad_low_note) % 12
            notes = [(out, low)] + [(out, low + (pc - low) % 12) for pc in pcs[1:]]
    thru = (settings.thru_channel if settings.thru_channel is not None else out) if settings.thru else None
    # a harmony note on the key the melody is echoed on would cut the melody short: leave it out
    return list(dict.fromkeys((c, p) for c, p in notes if 0 <= p <= 127 and (c, p) != (thru, soprano)))


def clashes(soprano: int, pitches: Iterable[int], style: str) -> bool:
    """True if a held chord cannot stay under this melody note: a semitone rub, or a voice above the melody."""
    for p in pitches:
        if (soprano - p) % 12 in (1, 11):
            return True
        if style != "pad" and p >= soprano:
            return True
    return False
