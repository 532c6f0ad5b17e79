"""Harmony voicing, pure: the model's alto, tenor and bass -> notes per style; when a held chord must give way."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from companion.core.theory import chord_from_pitches

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


def chord_voices(soprano: int, pcs: Iterable[int], previous: Voices | None,
                 ranges: Sequence[tuple[int, int]]) -> Voices:
    """The left hand's chord as (alto, tenor, bass) under the melody, at once, without the model.

    For a note whose model chords are not ready for the chord the player just took (it came a moment before
    the note): the bass on the chord's root, the inner voices on the chord tones the melody and bass leave
    out, each voice on the nearest such tone to where it was (or the middle of its range), below the melody
    where its range allows. `ranges` are the (low, high) of soprano, alto, tenor and bass."""
    tones = frozenset(int(pc) % 12 for pc in pcs)
    if not tones:
        return (None, None, None)
    chord = chord_from_pitches(sorted(tones))
    root = chord.root_pc if chord is not None else min(tones)
    last = previous or (None, None, None)

    def place(wanted: Iterable[int], voice: int, ceiling: int, taken: int | None = None) -> int | None:
        lo, hi = ranges[voice]
        target = last[voice - 1] if last[voice - 1] is not None else (lo + hi) // 2
        options = [p for p in range(lo, hi + 1) if p % 12 in wanted and p != taken]
        below = [p for p in options if p < ceiling]
        pool = below or options
        return min(pool, key=lambda p: (abs(p - target), p)) if pool else None

    bass = place({root}, 3, soprano - 7)  # a fifth or more under the melody where its range allows
    left = [pc for pc in sorted(tones, key=lambda pc: (pc - root) % 12) if pc not in (root, soprano % 12)]
    tenor = place(left[1:2] or left[:1] or tones, 2, soprano, bass)
    others = [pc for pc in left if tenor is None or pc != tenor % 12]
    alto = place(others or [pc for pc in tones if tenor is None or pc != tenor % 12] or tones, 1, soprano, tenor)
    if alto is not None and tenor is not None and alto < tenor:
        alto, tenor = tenor, alto  # no crossing
    return (alto, tenor, bass)


TRIADS = ((0, 4, 7), (0, 3, 7))  # major, minor: what a rule voicing chooses from
MELODY_ROLE = {0: 2, 7: 1, 3: 0, 4: 0}  # the melody as a triad's root before its fifth before its third


def rule_chord(soprano: int, steering: Iterable[int] | None, previous: Voices | None) -> frozenset[int]:
    """The pitch classes of a chord for a melody note when no model chord is ready (a model restarting, a note
    before its chords came): the left hand's chord when one steers (four tones or fewer); else the chord that
    sounds, while the note is one of its tones; else the major or minor triad within the key lock (any, without
    one) that holds the note and keeps the most of the chord that sounds, a major one and the note as its root
    before others."""
    lock = frozenset(int(pc) % 12 for pc in steering) if steering is not None else None
    if lock is not None and len(lock) <= 4:
        return lock
    melody = soprano % 12
    held = frozenset(p % 12 for p in previous or () if p is not None)
    if melody in held and len(held) >= 3:
        return held
    options = [(frozenset((root + i) % 12 for i in triad), kind, (melody - root) % 12)
               for kind, triad in enumerate(TRIADS) for root in range(12)]
    fitting = [o for o in options if melody in o[0] and (lock is None or o[0] <= lock)]
    if not fitting:  # a note outside the key lock: a triad on it
        return frozenset((melody + i) % 12 for i in TRIADS[0])
    # keep the most of what sounds; then major before minor; then the note as root, fifth, third
    return max(fitting, key=lambda o: (len(o[0] & held), -o[1], MELODY_ROLE[o[2]]))[0]
