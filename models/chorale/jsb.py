"""JSB Chorales on the 16th grid: loading, vocabulary, raster serialization and transposition augmentation."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

VOICES = ("soprano", "alto", "tenor", "bass")
SPLITS = ("train", "valid", "test")
DEFAULT_JSB_PATH = Path(__file__).resolve().parents[3] / "shared" / "data" / "jsb" / "Jsb16thSeparated.json"


class JsbDataError(ValueError):
    """The chorale file is missing or malformed; the message names the file and the field."""


@dataclass(frozen=True)
class JsbVocab:
    """Token layout, in named contiguous blocks: 0 = BOS, 1 = rest, then one token per MIDI pitch.

    BOS only starts a sequence (never a target), so the per-token NLL is over rest + pitches, one token per
    voice per 16th step as in the standard raster serialization.
    """

    pitch_lo: int = 30
    pitch_hi: int = 88  # inclusive; wide enough for the +-6 semitone transpositions of pitches 36..81

    BOS = 0
    REST = 1
    FIRST_PITCH = 2

    @property
    def size(self) -> int:
        return self.FIRST_PITCH + self.pitch_hi - self.pitch_lo + 1

    def encode(self, pitch: int | None) -> int:
        """MIDI pitch (None or negative = rest) -> token; raises ValueError outside the vocabulary."""
        if pitch is None or pitch < 0:
            return self.REST
        if not self.pitch_lo <= pitch <= self.pitch_hi:
            raise ValueError(f"pitch {pitch} is outside the vocabulary {self.pitch_lo}..{self.pitch_hi}")
        return self.FIRST_PITCH + pitch - self.pitch_lo

    def decode(self, token: int) -> int | None:
        """Token -> MIDI pitch, or None for rest (BOS also decodes to None)."""
        return None if token < self.FIRST_PITCH else self.pitch_lo + token - self.FIRST_PITCH

    def encode_array(self, pitches: np.ndarray) -> np.ndarray:
        """Pitches (any shape, -1 = rest) -> tokens (int64); raises ValueError outside the vocabulary."""
        p = np.asarray(pitches, dtype=np.int64)
        sounding = p >= 0
        if np.any(sounding & ((p < self.pitch_lo) | (p > self.pitch_hi))):
            raise ValueError(f"pitches outside the vocabulary {self.pitch_lo}..{self.pitch_hi}")
        return np.where(sounding, p - self.pitch_lo + self.FIRST_PITCH, self.REST)

    def describe(self) -> str:
        return (f"{self.size} tokens: 0 BOS | 1 rest | {self.FIRST_PITCH}..{self.size - 1} "
                f"pitches {self.pitch_lo}..{self.pitch_hi}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": "jsb-raster", **asdict(self), "size": self.size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JsbVocab:
        return cls(pitch_lo=int(d["pitch_lo"]), pitch_hi=int(d["pitch_hi"]))


def load_jsb(path: str | Path = DEFAULT_JSB_PATH) -> dict[str, list[np.ndarray]]:
    """Read Jsb16thSeparated.json -> {split: [piece (T, 4) int64, -1 = rest]}; clear errors if malformed."""
    path = Path(path)
    if not path.is_file():
        raise JsbDataError(f"chorale data {path} does not exist: give --data the path of Jsb16thSeparated.json")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise JsbDataError(f"chorale data {path} is not valid JSON ({err})") from err
    if not isinstance(raw, dict):
        raise JsbDataError(f"chorale data {path}: expected an object with keys {SPLITS}")
    out: dict[str, list[np.ndarray]] = {}
    for split in SPLITS:
        pieces = raw.get(split)
        if not isinstance(pieces, list) or not pieces:
            raise JsbDataError(f"chorale data {path}: split {split!r} is missing or empty")
        out[split] = []
        for i, piece in enumerate(pieces):
            try:
                arr = np.asarray(piece, dtype=np.int64)
            except (TypeError, ValueError) as err:
                raise JsbDataError(f"chorale data {path}: {split}[{i}] is not a list of [S, A, T, B] steps") from err
            if arr.ndim != 2 or arr.shape[1] != 4 or len(arr) == 0:
                raise JsbDataError(f"chorale data {path}: {split}[{i}] has shape {arr.shape}, expected (T, 4)")
            if np.any((arr < -1) | (arr > 127)):
                raise JsbDataError(f"chorale data {path}: {split}[{i}] holds values outside -1..127")
            out[split].append(arr)
    return out


def raster_tokens(piece: np.ndarray, vocab: JsbVocab) -> np.ndarray:
    """(T, 4) pitches -> (4T,) tokens in raster order S, A, T, B of step 1, then step 2, ..."""
    return vocab.encode_array(piece).reshape(-1)


def valid_shifts(piece: np.ndarray, vocab: JsbVocab, max_shift: int = 6) -> list[int]:
    """Transpositions in -max_shift..max_shift semitones that keep every pitch inside the vocabulary."""
    sounding = piece[piece >= 0]
    if sounding.size == 0:
        return [0]
    lo, hi = int(sounding.min()), int(sounding.max())
    return [s for s in range(-max_shift, max_shift + 1) if lo + s >= vocab.pitch_lo and hi + s <= vocab.pitch_hi]


def transpose(piece: np.ndarray, semitones: int) -> np.ndarray:
    """Shift every sounding pitch by ``semitones``; rests stay -1."""
    return np.where(piece >= 0, piece + semitones, -1)


def voice_ranges(pieces: list[np.ndarray]) -> list[tuple[int, int]]:
    """(lowest, highest) sounding pitch of each voice over ``pieces``."""
    stacked = np.concatenate(pieces, axis=0)
    ranges = []
    for v in range(4):
        col = stacked[:, v]
        col = col[col >= 0]
        ranges.append((int(col.min()), int(col.max())))
    return ranges


def step_arrays(piece_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step model inputs for a (T, 4) token piece: previous chord (BOS first), position in beat, target.

    The model reads the chord of step t-1 (and the 16th position of step t inside its beat) to predict
    the chord of step t voice by voice, which is the raster order S, A, T, B.
    """
    T = len(piece_tokens)
    prev = np.empty_like(piece_tokens)
    prev[0] = JsbVocab.BOS
    prev[1:] = piece_tokens[:-1]
    beat_pos = np.arange(T, dtype=np.int64) % 4
    return prev, beat_pos, piece_tokens
