"""Lead-sheet styles, pure: a chord symbol -> the notes to sound (pad, block, bass, comping, arpeggio), each
voice-led from the notes sounding before, in its register, on the preset's channels; and the rhythm of the
styles that follow the clock (comping strikes, arpeggio notes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.chords import vocab

NoteKey = tuple[int, int]  # (channel, pitch)
CHORD_STYLES = ("pad", "block", "bass", "comping", "arpeggio")
CLOCK_STYLES = ("comping", "arpeggio")  # they strike on the 16th grid, not only when the melody moves
BASS_LOW, BASS_HIGH = 36, 52  # C2..E3: the bass line stays here, root position
COMP_LOW, COMP_HIGH = 52, 71  # E3..B4: a left hand's comping chords
ARPEGGIO_SPAN = 19  # an arpeggio climbs an octave and a fifth from its root


def channels(settings: Any) -> tuple[int, int]:
    """(chord channel, bass channel): `harmony_channels` gives (upper, -, bass) when set, else the output."""
    if settings.harmony_channels:
        return settings.harmony_channels[0], settings.harmony_channels[2]
    return settings.output_channel, settings.output_channel


def _near(pc: int, target: float, low: int, high: int) -> int:
    """The pitch of class `pc` nearest `target` inside [low, high] (its octave inside the range)."""
    options = [p for p in range(low, high + 1) if p % 12 == pc]
    return min(options, key=lambda p: (abs(p - target), p)) if options else low + (pc - low) % 12


def bass_note(chord: int, previous: Sequence[int]) -> int:
    """The root in the bass register, the octave nearest the previous bass note (a walking line stays close)."""
    target = previous[0] if previous else (BASS_LOW + BASS_HIGH) / 2 - 2
    return _near(vocab.root_of(chord), target, BASS_LOW, BASS_HIGH)


def upper_voices(chord: int, previous: Sequence[int], low: int, high: int, below: int | None = None) -> list[int]:
    """The chord's tones (root left out of a four-note chord) voice-led: each the nearest to the previous
    voices' centre, kept inside [low, high] and under `below` (the melody) when given."""
    pcs = list(vocab.chord_pcs(chord))
    if len(pcs) > 3:
        pcs = pcs[1:]  # the bass has the root: third, fifth, seventh above it
    top = high if below is None else max(low + 11, min(high, below - 1))
    centre = sum(previous) / len(previous) if previous else (low + top) / 2
    notes = sorted({_near(pc, centre, low, top) for pc in pcs})
    return notes


def chord_notes(style: str, chord: int, soprano: int, previous: Sequence[NoteKey], settings: Any) -> list[NoteKey]:
    """The notes a chord symbol sounds as in `style` under the melody note `soprano` (comping and arpeggio:
    the full voicing their strikes take notes from)."""
    upper_channel, bass_channel = channels(settings)
    prev_bass = [p for c, p in previous if c == bass_channel and p < COMP_LOW]
    prev_upper = [p for c, p in previous if not (c == bass_channel and p < COMP_LOW)]
    if style == "bass":
        return [(bass_channel, bass_note(chord, prev_bass))]
    if style == "block":  # close position under the melody, its pitch class left to the melody
        pcs = [pc for pc in vocab.chord_pcs(chord) if pc != soprano % 12]
        below = sorted(soprano - ((soprano - pc) % 12 or 12) for pc in pcs)
        return [(upper_channel, p) for p in below]
    if style == "pad":  # the root at the bottom of the pad's register, the other tones voice-led above it
        low = settings.pad_low_note
        root = low + (vocab.root_of(chord) - low) % 12
        upper = upper_voices(chord, [p for p in prev_upper if p > root], root + 1, root + 16)
        return [(bass_channel, root)] + [(upper_channel, p) for p in upper if p % 12 != root % 12 or p > root]
    if style == "arpeggio":
        root = settings.pad_low_note + (vocab.root_of(chord) - settings.pad_low_note) % 12
        pcs = vocab.chord_pcs(chord)
        return [(upper_channel, p) for p in range(root, root + ARPEGGIO_SPAN + 1) if p % 12 in pcs]
    # comping: a left-hand voicing under the melody plus the root in the bass
    upper = upper_voices(chord, prev_upper, COMP_LOW, COMP_HIGH, below=soprano)
    return [(bass_channel, bass_note(chord, prev_bass))] + [(upper_channel, p) for p in upper]


def slot_steps(settings: Any) -> int:
    """16th steps per slot (the beat the chord model counts in): a dotted quarter in 6/8, 9/8, 12/8."""
    if settings.beat_unit == 8 and settings.beats_per_bar % 3 == 0 and settings.beats_per_bar > 3:
        return 6
    return max(1, 16 // settings.beat_unit)


def bar_steps(settings: Any) -> int:
    return max(1, settings.beats_per_bar * 16 // settings.beat_unit)


def strike(style: str, step_in_bar: int, voicing: Sequence[NoteKey], settings: Any,
           bass_channel: int) -> list[NoteKey] | None:
    """The notes a clock style strikes on this 16th of the bar (None: nothing new, what sounds rings on).

    Comping: the chord on the first beat of every pair of beats with the bass, and on the "and" of the
    other beats (a pop/folk strum); arpeggio: one chord tone per half beat (a third of one in compound
    time), up the chord and back down."""
    slot = slot_steps(settings)
    index, offset = divmod(step_in_bar, slot)
    if style == "comping":
        if offset == 0 and index % 2 == 0:
            return list(voicing)
        if offset == slot // 2 and index % 2 == 1:
            return [(c, p) for c, p in voicing if not (c == bass_channel and p < COMP_LOW)]
        return None
    every = slot // 3 if slot % 3 == 0 else max(1, slot // 2)
    if step_in_bar % every or not voicing:
        return None
    tones = sorted(voicing, key=lambda key: key[1])
    cycle = tones + tones[-2:0:-1]  # up and back down, the ends not repeated
    return [cycle[(step_in_bar // every) % len(cycle)]]
