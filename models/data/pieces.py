"""Pieces as grid notes with their conditioning (style, meter, key); the fixed split; key estimation."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLIT_PERCENT = (90, 5, 5)  # train / valid / test, by a hash of the piece id (documented in the model card)

# Krumhansl-Kessler key profiles (C major, C minor), used to estimate a key when the source gives none.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass
class Piece:
    """One piece: ``notes`` is an (N, 4) int32 array of (onset, duration, pitch, velocity) in grid steps."""

    piece_id: str
    style: str
    meter: str
    key: tuple[int, str] | None
    notes: np.ndarray
    title: str = ""  # normalised ABC titles, ' | '-joined (models.data.holdout), '' where unknown

    @property
    def split(self) -> str:
        return split_of(self.piece_id)


def split_of(piece_id: str) -> str:
    """'train', 'valid' or 'test': fixed by the SHA-1 of the piece id, so it never moves between runs."""
    h = int.from_bytes(hashlib.sha1(piece_id.encode("utf-8")).digest()[:8], "big") % 100
    if h < SPLIT_PERCENT[0]:
        return "train"
    if h < SPLIT_PERCENT[0] + SPLIT_PERCENT[1]:
        return "valid"
    return "test"


def estimate_key(pitches: Sequence[int], weights: Sequence[float] | None = None) -> tuple[int, str] | None:
    """Krumhansl-Schmuckler key estimate from pitches (weighted by duration if given); None if no notes."""
    if len(pitches) == 0:
        return None
    hist = np.zeros(12)
    np.add.at(hist, np.asarray(pitches, dtype=np.int64) % 12,
              np.ones(len(pitches)) if weights is None else np.asarray(weights, dtype=np.float64))
    if hist.sum() <= 0 or np.count_nonzero(hist) < 2:
        return None
    best, best_r = None, -2.0
    for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
        for tonic in range(12):
            r = float(np.corrcoef(hist, np.roll(profile, tonic))[0, 1])
            if r > best_r:
                best, best_r = (tonic, mode), r
    return best


def key_to_code(key: tuple[int, str] | None) -> int:
    return -1 if key is None else key[0] % 12 + (12 if key[1] == "minor" else 0)


def code_to_key(code: int) -> tuple[int, str] | None:
    return None if code < 0 else (code % 12, "minor" if code >= 12 else "major")


def pack_pieces(pieces: Sequence[Piece]) -> dict[str, np.ndarray]:
    """Pieces -> flat arrays (for one .npz)."""
    counts = [len(p.notes) for p in pieces]
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(counts)
    notes = np.concatenate([p.notes for p in pieces]).astype(np.int32) if pieces else \
        np.zeros((0, 4), dtype=np.int32)
    return {"notes": notes, "offsets": offsets,
            "ids": np.array([p.piece_id for p in pieces], dtype=str),
            "styles": np.array([p.style for p in pieces], dtype=str),
            "meters": np.array([p.meter for p in pieces], dtype=str),
            "keys": np.array([key_to_code(p.key) for p in pieces], dtype=np.int16),
            "titles": np.array([p.title for p in pieces], dtype=str)}


def unpack_pieces(arrays: dict[str, np.ndarray]) -> list[Piece]:
    offsets = arrays["offsets"]
    notes = arrays["notes"]
    titles = arrays.get("titles")  # written since the held-out split; older files have none
    return [Piece(str(arrays["ids"][i]), str(arrays["styles"][i]), str(arrays["meters"][i]),
                  code_to_key(int(arrays["keys"][i])), notes[offsets[i] : offsets[i + 1]],
                  str(titles[i]) if titles is not None else "")
            for i in range(len(offsets) - 1)]


def save_pieces(path: Path, pieces: Sequence[Piece]) -> None:
    """All pieces in one compressed .npz (the consolidated corpus that travels to the training machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **pack_pieces(pieces))


def load_pieces(path: Path) -> list[Piece]:
    with np.load(path, allow_pickle=False) as z:
        return unpack_pieces({k: z[k] for k in z.files})
