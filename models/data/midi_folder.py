"""A folder of the user's MIDI files (read with miditoolkit) as pieces on the grid, style "user"."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data.pieces import Piece, estimate_key
from models.tokenizer import TokenizerConfig

MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")
_PC_OF = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def midi_files(folder: Path) -> list[Path]:
    """Every MIDI file under ``folder`` (recursively), sorted. Raises ValueError naming the folder if none."""
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder; pass --data a folder that holds .mid files")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no MIDI files (.mid, .midi) found in it or below it")
    return files


def _key_from_name(name: str) -> tuple[int, str] | None:
    """miditoolkit key names such as 'C', 'F#m', 'Bb' -> (tonic pc, mode)."""
    name = name.strip()
    if not name or name[0].upper() not in _PC_OF:
        return None
    pc = _PC_OF[name[0].upper()]
    rest = name[1:]
    if rest.startswith("#"):
        pc, rest = pc + 1, rest[1:]
    elif rest.startswith("b"):
        pc, rest = pc - 1, rest[1:]
    minor = rest.lower().startswith("m") and not rest.lower().startswith("maj")
    return pc % 12, "minor" if minor else "major"


def read_midi(path: Path, piece_id: str, config: TokenizerConfig, style: str = "user") -> Piece | None:
    """One MIDI file -> a piece (drums left out). Bars count from tick 0 in the file's first meter.

    Raises ValueError (or miditoolkit's own error) for a file that cannot be read; None if it has no notes.
    """
    import miditoolkit

    midi = miditoolkit.MidiFile(str(path))
    tpb = midi.ticks_per_beat
    if tpb <= 0:
        raise ValueError(f"{path}: ticks per beat is {tpb}")
    meter = "4/4"
    if midi.time_signature_changes:
        ts = midi.time_signature_changes[0]
        candidate = f"{ts.numerator}/{ts.denominator}"
        if candidate in config.meters:
            meter = candidate
    ppb = config.positions_per_beat
    rows = []
    for inst in midi.instruments:
        if inst.is_drum:
            continue
        for n in inst.notes:
            onset = int(round(n.start * ppb / tpb))
            dur = max(1, int(round((n.end - n.start) * ppb / tpb)))
            rows.append((onset, dur, int(n.pitch), int(n.velocity)))
    if not rows:
        return None
    notes = np.array(sorted(rows), dtype=np.int32)
    key = None
    if midi.key_signature_changes:
        key = _key_from_name(midi.key_signature_changes[0].key_name)
    key = key or estimate_key(notes[:, 2], notes[:, 1])
    return Piece(piece_id, style, meter, key, notes)
