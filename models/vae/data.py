"""Melodies on a 16th grid for the phrase VAE: notes <-> step tokens, corpus pieces -> phrase arrays, windows.

Notes in ticks are (pitch, velocity, onset_ticks, duration_ticks) relative to the phrase's bar line. A phrase
becomes one token per 16th (``models.vae.net``: REST, HOLD, NOTE_ON(pitch)); where notes overlap, the melody is
the top line: the highest of the notes starting on a step wins, and a new onset cuts the note before it.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from models.data.pieces import Piece
from models.vae.net import HOLD, N_PITCHES, NOTE_OFFSET, REST

STEPS_PER_QUARTER = 4
SPLIT_CODE = {"train": 0, "valid": 1, "test": 2}
StepNote = tuple[int, int, int]  # (pitch, onset_step, duration_steps)


def notes_to_tokens(notes: Iterable[StepNote], n_steps: int) -> np.ndarray:
    """(pitch, onset_step, duration_steps) notes -> (n_steps,) uint8 tokens, top line, clipped to the phrase."""
    tokens = np.full(n_steps, REST, dtype=np.uint8)
    by_onset: dict[int, tuple[int, int]] = {}
    for pitch, onset, duration in notes:
        if 0 <= onset < n_steps and 0 <= pitch < N_PITCHES and duration > 0:
            if onset not in by_onset or pitch > by_onset[onset][0]:
                by_onset[onset] = (pitch, duration)
    onsets = sorted(by_onset)
    for i, onset in enumerate(onsets):
        pitch, duration = by_onset[onset]
        end = min(onset + duration, n_steps, onsets[i + 1] if i + 1 < len(onsets) else n_steps)
        tokens[onset] = NOTE_OFFSET + pitch
        tokens[onset + 1 : end] = HOLD
    return tokens


def tokens_to_notes(tokens: Sequence[int] | np.ndarray) -> list[StepNote]:
    """Step tokens -> (pitch, onset_step, duration_steps) notes; a stray HOLD after a rest stays a rest."""
    notes: list[StepNote] = []
    current: list[int] | None = None
    for step, token in enumerate(int(t) for t in tokens):
        if token >= NOTE_OFFSET:
            current = [token - NOTE_OFFSET, step, 1]
            notes.append(current)  # type: ignore[arg-type]
        elif token == HOLD and current is not None:
            current[2] += 1
        else:
            current = None
    return [tuple(n) for n in notes]  # type: ignore[misc]


def ticks_to_step_notes(notes: Iterable[Sequence[int]], ppq: int, n_steps: int) -> list[StepNote]:
    """(pitch, velocity, onset_ticks, duration_ticks) -> (pitch, onset_step, duration_steps) on the 16th grid."""
    step_ticks = ppq / STEPS_PER_QUARTER
    out = []
    for pitch, _velocity, onset_ticks, duration_ticks in (tuple(n)[:4] for n in notes):
        onset = int(round(onset_ticks / step_ticks))
        if 0 <= onset < n_steps:
            out.append((int(pitch), onset, max(1, int(round(duration_ticks / step_ticks)))))
    return out


def steps_per_bar(bar_ticks: int, ppq: int) -> int:
    """16ths in one bar; ValueError if the bar is not a whole number of 16ths."""
    step_ticks = ppq // STEPS_PER_QUARTER
    if ppq % STEPS_PER_QUARTER or bar_ticks % step_ticks:
        raise ValueError(f"a bar of {bar_ticks} ticks at PPQ {ppq} is not a whole number of 16ths")
    return bar_ticks // step_ticks


# --- corpus pieces -> phrase arrays (the small .npz that travels to the training machine) ------------------


def piece_tokens(piece: Piece, positions_per_beat: int) -> tuple[np.ndarray, int] | None:
    """A corpus piece (grid of ``positions_per_beat`` a quarter) -> (tokens, steps per bar), or None if off-grid."""
    per_step = positions_per_beat // STEPS_PER_QUARTER
    num, den = (int(x) for x in piece.meter.split("/"))
    bar_16ths = num * 16 // den if (num * 16) % den == 0 else 0
    if positions_per_beat % STEPS_PER_QUARTER or bar_16ths == 0 or len(piece.notes) == 0:
        return None
    onsets = np.rint(piece.notes[:, 0] / per_step).astype(np.int64)
    durations = np.maximum(1, np.rint(piece.notes[:, 1] / per_step).astype(np.int64))
    n_steps = int((onsets + durations).max())
    notes = zip(piece.notes[:, 2].tolist(), onsets.tolist(), durations.tolist(), strict=False)
    return notes_to_tokens(notes, n_steps), bar_16ths


def phrase_arrays(pieces: Sequence[Piece], positions_per_beat: int) -> dict[str, np.ndarray]:
    """Pieces -> flat arrays: ``tokens`` (uint8), ``offsets``, ``bar_steps``, ``split`` (0/1/2), ``ids``."""
    chunks, bars, splits, ids = [], [], [], []
    for piece in pieces:
        got = piece_tokens(piece, positions_per_beat)
        if got is None:
            continue
        chunks.append(got[0])
        bars.append(got[1])
        splits.append(SPLIT_CODE[piece.split])
        ids.append(piece.piece_id)
    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(c) for c in chunks])
    return {"tokens": np.concatenate(chunks) if chunks else np.zeros(0, np.uint8), "offsets": offsets,
            "bar_steps": np.array(bars, dtype=np.int32), "split": np.array(splits, dtype=np.int8),
            "ids": np.array(ids, dtype=str)}


def save_phrase_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


class PhraseDataError(ValueError):
    """The phrase arrays are missing or not what ``--prepare`` writes; the message names the file and the fix."""


PHRASE_KEYS = ("tokens", "offsets", "bar_steps", "split")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with path.open("rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise ValueError("it is not an .npz archive")
    with np.load(path, allow_pickle=False) as loaded:
        return {k: loaded[k] for k in loaded.files}


def load_phrase_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays ``save_phrase_arrays`` wrote; PhraseDataError naming the file if it is missing or not one."""
    path = Path(path)
    make = "`companion train vae --prepare --data FILE.npz` makes it from music21's folk corpus"
    if path.is_dir():
        raise PhraseDataError(f"phrase data {path} is a folder: give the phrase-array .npz file; {make}")
    if not path.is_file():
        raise PhraseDataError(f"no phrase data at {path}: make it with `companion train vae --prepare --data {path}` "
                              "(parses music21's folk corpus)")
    try:
        arrays = _read_npz(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise PhraseDataError(f"phrase data {path} is not a phrase-array file ({err}); give the .npz that "
                              f"--prepare wrote: {make}") from None
    missing = [k for k in PHRASE_KEYS if k not in arrays]
    if missing:
        raise PhraseDataError(f"phrase data {path} lacks the arrays {', '.join(missing)}, so --prepare did not "
                              f"write it; {make}")
    return arrays


def window_starts(arrays: dict[str, np.ndarray], split: str, length: int, min_notes: int = 2,
                  bar_steps: int | None = None) -> np.ndarray:
    """Flat start indices of every ``length``-step window that starts on a bar line, within one piece of
    ``split``, holding at least ``min_notes`` note-ons (optionally only pieces with ``bar_steps`` a bar)."""
    tokens, offsets = arrays["tokens"], arrays["offsets"]
    is_on = (tokens >= NOTE_OFFSET).astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(is_on)])
    out = []
    code = SPLIT_CODE[split]
    for i in np.flatnonzero(arrays["split"] == code):
        bar = int(arrays["bar_steps"][i])
        if bar_steps is not None and bar != bar_steps:
            continue
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        starts = np.arange(lo, hi - length + 1, bar)
        if len(starts):
            starts = starts[cum[starts + length] - cum[starts] >= min_notes]
            out.append(starts)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def gather_windows(tokens: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(N,) starts -> (N, length) int64 token windows."""
    return tokens[starts[:, None] + np.arange(length)[None, :]].astype(np.int64)


def transpose_windows(windows: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift the note-ons of each window by its semitones; a window that would leave 0..127 stays as it is."""
    on = windows >= NOTE_OFFSET
    moved = np.where(on, windows + shifts[:, None], windows)
    bad = (on & ((moved < NOTE_OFFSET) | (moved >= NOTE_OFFSET + N_PITCHES))).any(axis=1)
    moved[bad] = windows[bad]
    return moved
