"""Chord symbols as classes: 12 roots x QUALITIES, their pitch classes and names, and label parsing."""

from __future__ import annotations

import re

QUALITIES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("", (0, 4, 7)),
    ("m", (0, 3, 7)),
    ("7", (0, 4, 7, 10)),
    ("maj7", (0, 4, 7, 11)),
    ("m7", (0, 3, 7, 10)),
    ("dim", (0, 3, 6)),
    ("sus4", (0, 5, 7)),
)
N_QUALITIES = len(QUALITIES)
N_CHORDS = 12 * N_QUALITIES
NO_CHORD = -1
ROOT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_PCS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)

# the quality part of a label (POP909 "min7", music21 "minor-seventh", a lead sheet's "m7") -> our quality
_QUALITY_OF = {
    "": "", "maj": "", "major": "", "5": "", "maj6": "", "6": "", "major-sixth": "", "power": "", "aug": "",
    "augmented": "", "add9": "", "maj(9)": "", "pedal": "",
    "min": "m", "m": "m", "minor": "m", "min6": "m", "m6": "m", "minor-sixth": "m", "min(9)": "m", "madd9": "m",
    "7": "7", "9": "7", "11": "7", "13": "7", "dominant": "7", "dominant-seventh": "7", "dominant-ninth": "7",
    "dominant-11th": "7", "dominant-13th": "7", "7sus4": "7", "augmented-seventh": "7", "7(b9)": "7",
    "maj7": "maj7", "maj9": "maj7", "major-seventh": "maj7", "major-ninth": "maj7", "maj13": "maj7",
    "min7": "m7", "m7": "m7", "min9": "m7", "min11": "m7", "minor-seventh": "m7", "minor-ninth": "m7",
    "minor-11th": "m7", "minor-13th": "m7", "minmaj7": "m", "minor-major": "m",
    "dim": "dim", "diminished": "dim", "dim7": "dim", "diminished-seventh": "dim", "hdim7": "dim",
    "half-diminished": "dim", "m7b5": "dim", "min7b5": "dim",
    "sus4": "sus4", "sus2": "sus4", "suspended-fourth": "sus4", "suspended-second": "sus4", "sus": "sus4",
}
_QUALITY_INDEX = {name: i for i, (name, _) in enumerate(QUALITIES)}


def chord_index(root_pc: int, quality: str) -> int:
    return (root_pc % 12) * N_QUALITIES + _QUALITY_INDEX[quality]


def root_of(index: int) -> int:
    return index // N_QUALITIES


def quality_of(index: int) -> str:
    return QUALITIES[index % N_QUALITIES][0]


def chord_pcs(index: int) -> tuple[int, ...]:
    """Pitch classes of a chord class, root first."""
    root = root_of(index)
    return tuple((root + s) % 12 for s in QUALITIES[index % N_QUALITIES][1])


def chord_name(index: int) -> str:
    return "N.C." if index == NO_CHORD else f"{ROOT_NAMES[root_of(index)]}{quality_of(index)}"


def transpose(index: int, semitones: int) -> int:
    return index if index == NO_CHORD else chord_index(root_of(index) + semitones, quality_of(index))


def parse_root(text: str) -> int:
    """'Bb' -> 10, 'F#' -> 6, 'C-' (music21's flat) -> 11; ValueError if not a note name."""
    if not text or text[0].upper() not in _PCS:
        raise ValueError(f"not a note name: {text!r}")
    pc = _PCS[text[0].upper()]
    for accidental in text[1:]:
        pc += {"#": 1, "b": -1, "-": -1}.get(accidental, 0)
    return pc % 12


def parse_quality(text: str) -> str | None:
    """A label's quality in our vocabulary, or None when it is none we know."""
    text = text.strip()
    if text in _QUALITY_OF:
        return _QUALITY_OF[text]
    base = re.split(r"[(/]", text, maxsplit=1)[0]
    return _QUALITY_OF.get(base)


def parse_pop909(label: str) -> int | None:
    """A POP909 label ('B:maj', 'A:min7/b3', 'N') -> class, NO_CHORD for 'N', None for one we cannot read."""
    label = label.strip()
    if label in ("N", "X", ""):
        return NO_CHORD
    root, _, rest = label.partition(":")
    try:
        pc = parse_root(root)
    except ValueError:
        return None
    quality = parse_quality(rest.split("/")[0] if rest else "maj")
    return None if quality is None else chord_index(pc, quality)


def major_frame(scale_pcs: frozenset[int] | set[int] | None) -> int:
    """The tonic of the major scale sharing most notes with `scale_pcs` (C major and A minor -> 0); 0 if none."""
    if not scale_pcs:
        return 0
    return max(range(12), key=lambda t: (sum((t + s) % 12 in scale_pcs for s in MAJOR_SCALE), -t))
