"""A small melody written as a MIDI file, for the command-line tests that need an input file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mido

SCALE_UP_AND_DOWN = (60, 62, 64, 65, 67, 65, 64, 62)


def write_melody(path: Path, pitches: Sequence[int] = SCALE_UP_AND_DOWN) -> Path:
    """Quarter notes at 96 ticks per beat, one track, type 0; returns `path`."""
    midi = mido.MidiFile(type=0, ticks_per_beat=96)
    track = mido.MidiTrack()
    for pitch in pitches:
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=96))
    midi.tracks.append(track)
    midi.save(path)
    return path
