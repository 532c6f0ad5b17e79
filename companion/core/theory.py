"""Pitch classes, scales, keys, chords and key estimation (Krumhansl-Schmuckler)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Spelling of the tonic as musicians write it: major-like keys and minor-like keys.
_MAJOR_TONIC_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_TONIC_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),  # natural minor (aeolian)
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic_minor": (0, 2, 3, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "major_pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "chromatic": tuple(range(12)),
}
_ALIASES = {"ionian": "major", "aeolian": "minor", "natural_minor": "minor"}
_MINOR_LIKE = {
    "minor",
    "harmonic_minor",
    "melodic_minor",
    "dorian",
    "phrygian",
    "locrian",
    "minor_pentatonic",
    "blues",
}

# Krumhansl-Kessler key profiles (probe-tone ratings), index 0 = tonic.
_MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
_MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)


def pitch_class(pitch: int) -> int:
    return pitch % 12


def pitch_name(pitch: int) -> str:
    """Scientific pitch name with sharps, middle C (60) = C4."""
    return f"{SHARP_NAMES[pitch % 12]}{pitch // 12 - 1}"


def parse_mode(mode: str) -> str:
    """Canonical scale name for `mode` ("Aeolian" -> "minor"); ValueError listing the known ones."""
    name = mode.strip().lower().replace(" ", "_").replace("-", "_")
    name = _ALIASES.get(name, name)
    if name not in SCALES:
        raise ValueError(f"unknown scale or mode {mode!r}; known: {', '.join(sorted(SCALES))}")
    return name


@dataclass(frozen=True, slots=True)
class Key:
    """A tonic pitch class (0 = C) and a mode from `SCALES`."""

    tonic_pc: int
    mode: str = "major"

    def __post_init__(self) -> None:
        if not (0 <= self.tonic_pc <= 11):
            raise ValueError(f"tonic pitch class must be 0..11, got {self.tonic_pc!r}")
        object.__setattr__(self, "mode", parse_mode(self.mode))

    @property
    def scale_pitch_classes(self) -> frozenset[int]:
        return frozenset((self.tonic_pc + step) % 12 for step in SCALES[self.mode])

    @property
    def degrees(self) -> tuple[int, ...]:
        """Pitch classes of the scale degrees in order, from the tonic."""
        return tuple((self.tonic_pc + step) % 12 for step in SCALES[self.mode])

    @property
    def name(self) -> str:
        names = _MINOR_TONIC_NAMES if self.mode in _MINOR_LIKE else _MAJOR_TONIC_NAMES
        return f"{names[self.tonic_pc]} {self.mode.replace('_', ' ')}"

    def contains(self, pitch: int) -> bool:
        return pitch % 12 in self.scale_pitch_classes

    def snap(self, pitch: int, prefer_up: bool = False) -> int:
        """The nearest pitch in the scale; ties (a semitone either side) go down unless `prefer_up`."""
        return snap_to_pitch_classes(pitch, self.scale_pitch_classes, prefer_up)

    def as_pair(self) -> tuple[int, str]:
        """(tonic_pc, mode) as carried in `RequestAnswer.key`."""
        return (self.tonic_pc, self.mode)

    @classmethod
    def parse(cls, text: str) -> Key:
        """Parse "D minor", "Bb major", "F# dorian", "c" (major); ValueError naming what is wrong."""
        parts = text.strip().split(None, 1)
        if not parts:
            raise ValueError("empty key name; write it like 'D minor' or 'Bb major'")
        tonic = parts[0][0].upper() + parts[0][1:]
        flats = {"Db": 1, "Eb": 3, "Gb": 6, "Ab": 8, "Bb": 10, "Cb": 11, "Fb": 4, "E#": 5, "B#": 0}
        if tonic in flats:
            tonic_pc = flats[tonic]
        elif tonic in SHARP_NAMES:
            tonic_pc = SHARP_NAMES.index(tonic)
        else:
            raise ValueError(
                f"unknown key tonic {parts[0]!r} in {text!r}; write it like 'D minor' or 'Bb major'"
            )
        return cls(tonic_pc, parts[1] if len(parts) > 1 else "major")


def snap_to_pitch_classes(pitch: int, pitch_classes: Iterable[int], prefer_up: bool = False) -> int:
    """The nearest pitch whose class is in `pitch_classes`, kept in 0..127; unchanged if the set is empty."""
    allowed = {pc % 12 for pc in pitch_classes}
    if not allowed or pitch % 12 in allowed:
        return pitch
    for distance in range(1, 12):
        candidates = (
            (pitch + distance, pitch - distance) if prefer_up else (pitch - distance, pitch + distance)
        )
        for candidate in candidates:
            if 0 <= candidate <= 127 and candidate % 12 in allowed:
                return candidate
    return pitch


# --- key estimation ---------------------------------------------------------------------------------


def _correlation(xs: Sequence[float], ys: Sequence[float]) -> float:
    mean_x = sum(xs) / len(xs)
    mean_y = sum(ys) / len(ys)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mean_x) ** 2 for x in xs)
    syy = sum((y - mean_y) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return 0.0
    return sxy / math.sqrt(sxx * syy)


def pitch_class_histogram(notes: Iterable[tuple[int, float]]) -> list[float]:
    """Weight per pitch class from (pitch, weight) pairs (weight = duration, usually)."""
    histogram = [0.0] * 12
    for pitch, weight in notes:
        histogram[pitch % 12] += max(float(weight), 0.0)
    return histogram


def key_correlations(notes: Iterable[tuple[int, float]]) -> list[tuple[Key, float]]:
    """All 24 major/minor keys with their profile correlation, best first (ties: lower tonic, major)."""
    histogram = pitch_class_histogram(notes)
    scored: list[tuple[Key, float]] = []
    for tonic in range(12):
        for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
            rotated = [profile[(pc - tonic) % 12] for pc in range(12)]
            scored.append((Key(tonic, mode), _correlation(histogram, rotated)))
    scored.sort(key=lambda item: -item[1])
    return scored


def estimate_key(notes: Iterable[tuple[int, float]]) -> Key | None:
    """The best major or minor key for (pitch, weight) pairs; None when there is nothing to go on."""
    notes = list(notes)
    if not notes or sum(max(w, 0.0) for _, w in notes) <= 0:
        return None
    return key_correlations(notes)[0][0]


# --- chords -----------------------------------------------------------------------------------------

CHORD_QUALITIES: dict[str, tuple[int, ...]] = {
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "m7b5": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9),
    "mMaj7": (0, 3, 7, 11),
    "augMaj7": (0, 4, 8, 11),
    "6": (0, 4, 7, 9),
    "m6": (0, 3, 7, 9),
}


@dataclass(frozen=True, slots=True)
class Chord:
    """A chord as a root pitch class and a quality suffix from `CHORD_QUALITIES` ("" = major triad)."""

    root_pc: int
    quality: str = ""

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        return tuple((self.root_pc + step) % 12 for step in CHORD_QUALITIES[self.quality])

    @property
    def name(self) -> str:
        return f"{_MAJOR_TONIC_NAMES[self.root_pc]}{self.quality}"

    def voicing(self, bass_pitch: int) -> tuple[int, ...]:
        """Close position from the root at or above `bass_pitch`."""
        root = bass_pitch + (self.root_pc - bass_pitch) % 12
        return tuple(root + step for step in CHORD_QUALITIES[self.quality])


def diatonic_chord(key: Key, degree: int, seventh: bool = False) -> tuple[int, ...]:
    """Pitch classes of the chord stacked in thirds on scale degree `degree` (1-based) of a 7-note key."""
    scale = key.degrees
    if len(scale) != 7:
        raise ValueError(f"diatonic chords need a 7-note scale; {key.name} has {len(scale)} notes")
    if not (1 <= degree <= 7):
        raise ValueError(f"scale degree must be 1..7, got {degree!r}")
    size = 4 if seventh else 3
    return tuple(scale[(degree - 1 + 2 * i) % 7] for i in range(size))


def diatonic_chords(key: Key, seventh: bool = False) -> list[Chord]:
    """The chords on degrees 1..7 of `key`, identified (e.g. C major -> C, Dm, Em, F, G, Am, Bdim)."""
    chords: list[Chord] = []
    for degree in range(1, 8):
        pcs = diatonic_chord(key, degree, seventh)
        chord = chord_from_pitches(pcs, root_hint=pcs[0])
        assert chord is not None  # stacked thirds of a 7-note scale always name a chord here
        chords.append(chord)
    return chords


def chord_from_pitches(pitches: Iterable[int], root_hint: int | None = None) -> Chord | None:
    """Name the chord formed by `pitches` (any octave, any inversion), or None if it is no known chord.

    The lowest pitch is preferred as root when several readings fit (C6 vs Am7), unless `root_hint`
    (a pitch class) is given.
    """
    pitches = list(pitches)
    pcs = {p % 12 for p in pitches}
    if len(pcs) < 3:
        return None
    preferred = root_hint % 12 if root_hint is not None else min(pitches) % 12
    roots = [preferred] + sorted(pcs - {preferred})
    for root in roots:
        intervals = {(pc - root) % 12 for pc in pcs}
        for quality, steps in CHORD_QUALITIES.items():
            if intervals == set(steps):
                return Chord(root, quality)
    return None
