"""The music21 corpus (offline, inside the package) as parse tasks: folk ABC tunes, chorales, polyphony.

Each corpus file gets a style tag from its folder. ABC files holding many tunes (an opus) are split into one
task per tune, so a process pool can share the work. ``parse_task`` turns one task into pieces on the grid.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from models.data.pieces import Piece, estimate_key
from models.tokenizer import DEFAULT_VELOCITY, TokenizerConfig

# corpus folder -> style tag; folders not listed (demos, exercises, 20th-century serial works) are not read
STYLE_OF_FOLDER = {
    "essenFolksong": "folk", "oneills1850": "folk", "ryansMammoth": "folk", "airdsAirs": "folk",
    "miscFolk": "folk", "nottingham-dataset": "folk",
    "bach": "chorale",
    "palestrina": "renaissance", "trecento": "renaissance", "josquin": "renaissance",
    "monteverdi": "renaissance", "ciconia": "renaissance", "luca": "renaissance", "lusitano": "renaissance",
    "beethoven": "classical", "mozart": "classical", "haydn": "classical", "schumann_robert": "classical",
    "schumann_clara": "classical", "chopin": "classical", "schubert": "classical", "handel": "classical",
    "corelli": "classical", "cpebach": "classical", "weber": "classical", "verdi": "classical",
    "beach": "classical", "joplin": "classical", "johnson_j_r": "classical", "liliuokalani": "classical",
}
SCORE_SUFFIXES = (".abc", ".krn", ".mxl", ".xml", ".musicxml")
# modes music21 reads from ABC K: fields, mapped to the major/minor key token by their third
_MODE_TO_KEY = {"major": "major", "ionian": "major", "mixolydian": "major", "lydian": "major",
                "minor": "minor", "aeolian": "minor", "dorian": "minor", "phrygian": "minor",
                "locrian": "minor"}


@dataclass(frozen=True)
class ParseTask:
    """One unit of parsing work: a whole score file, or one tune (``text``) of an ABC file."""

    source: str  # path of the file, relative to the corpus root (or absolute for user files)
    path: str  # absolute path
    style: str
    tune_index: int = -1  # -1: the whole file
    text: str = ""

    @property
    def piece_id(self) -> str:
        return self.source if self.tune_index < 0 else f"{self.source}#{self.tune_index}"


def corpus_root() -> Path:
    """The corpus folder inside the installed music21 package."""
    import music21

    return Path(music21.__file__).parent / "corpus"


def corpus_files(root: Path | None = None, styles: tuple[str, ...] | None = None) -> list[tuple[Path, str]]:
    """(file, style) for every score file of a known folder, sorted, optionally only some styles."""
    root = root or corpus_root()
    out = []
    for folder, style in sorted(STYLE_OF_FOLDER.items()):
        if styles is not None and style not in styles:
            continue
        base = root / folder
        if base.is_dir():
            out.extend((p, style) for p in sorted(base.rglob("*")) if p.suffix.lower() in SCORE_SUFFIXES)
    return out


def split_abc(text: str) -> tuple[str, list[str]]:
    """An ABC file -> (file header, tunes); each tune starts at its ``X:`` line."""
    chunks = re.split(r"(?m)^(?=X:)", text)
    header = chunks[0] if chunks and not chunks[0].startswith("X:") else ""
    tunes = [c for c in chunks if c.startswith("X:")]
    return header, tunes


def tasks_for_file(path: Path, style: str, source: str) -> Iterator[ParseTask]:
    if path.suffix.lower() != ".abc":
        yield ParseTask(source, str(path), style)
        return
    text = path.read_bytes().decode("latin-1")
    header, tunes = split_abc(text)
    for i, tune in enumerate(tunes):
        # the file header (global fields) goes before every tune, after its X: line
        first, _, rest = tune.partition("\n")
        yield ParseTask(source, str(path), style, i, f"{first}\n{header.strip()}\n{rest}" if header.strip()
                        else tune)


def parse_task(task: ParseTask, config: TokenizerConfig) -> list[Piece]:
    """Parse one task with music21 into pieces (an empty list if it holds no notes). May raise."""
    from music21 import converter

    if task.tune_index >= 0:
        score = converter.parseData(task.text, format="abc")
    else:
        score = converter.parse(task.path, forceSource=True)
    scores = list(score.scores) if hasattr(score, "scores") and len(score.scores) else [score]
    pieces = []
    for i, sc in enumerate(scores):
        pid = task.piece_id if len(scores) == 1 else f"{task.piece_id}/{i}"
        piece = score_to_piece(sc, pid, task.style, config)
        if piece is not None:
            pieces.append(piece)
    return pieces


def _meter_of(score: object) -> str | None:
    from music21 import meter

    for ts in score.recurse().getElementsByClass(meter.TimeSignature):  # type: ignore[attr-defined]
        return str(ts.ratioString)
    return None


def _key_of(score: object) -> tuple[int, str] | None:
    from music21 import key

    for k in score.recurse().getElementsByClass(key.Key):  # type: ignore[attr-defined]
        mode = _MODE_TO_KEY.get(str(k.mode))
        if mode is not None:
            # a modal K: field (e.g. A dorian) is tonic + the major/minor of its third
            return int(k.tonic.pitchClass), mode
    return None


def score_to_piece(score: object, piece_id: str, style: str, config: TokenizerConfig) -> Piece | None:
    """A music21 score -> a piece on the grid: parts merged, ties joined, pickups and split bars aligned.

    A meter the tokenizer lacks falls back to 4/4 bars; the piece stops at a lasting change of meter.
    """
    meter_str = _meter_of(score) or "4/4"
    if meter_str not in config.meters:
        meter_str = "4/4"
    bar_ql = Fraction(4 * int(meter_str.split("/")[0]), int(meter_str.split("/")[1]))
    ppb = config.positions_per_beat
    parts = list(score.parts) if hasattr(score, "parts") else []  # type: ignore[attr-defined]
    parts = parts or [score]
    rows: list[tuple[int, int, int, int]] = []
    for part in parts:
        part = part.stripTies()
        measures = list(part.getElementsByClass("Measure"))
        if not measures:
            measures = [part]
        for onset_ql, n in _placed_notes(measures, bar_ql, meter_str):
            dur_ql = Fraction(n.duration.quarterLength).limit_denominator(96)
            if dur_ql <= 0:
                continue  # grace notes
            vel = n.volume.velocity if n.volume is not None and n.volume.velocity else DEFAULT_VELOCITY
            onset = int(round(onset_ql * ppb))
            dur = max(1, int(round(dur_ql * ppb)))
            for p in n.pitches:
                rows.append((onset, dur, int(p.midi), int(vel)))
    if not rows:
        return None
    notes = np.array(sorted(rows), dtype=np.int32)
    notes = notes[(notes[:, 2] >= 0) & (notes[:, 2] < 128)]
    key = _key_of(score) or estimate_key(notes[:, 2], notes[:, 1])
    return Piece(piece_id, style, meter_str, key, notes)


def _placed_notes(measures: list, bar_ql: Fraction, meter_str: str) -> Iterator[tuple[Fraction, object]]:
    """(onset on the bar grid in quarter notes, note) for the notes of a part's measures.

    A short first measure is a pickup (right-aligned in bar 0); two short measures that fill one bar are
    its halves; a short measure before a full one is a pickup inside the piece; a long measure pushes the
    next bar line on. Parsing stops where the meter changes for good.
    """
    lengths = [Fraction(m.highestTime).limit_denominator(96) or bar_ql for m in measures]
    cursor = Fraction(0)
    for i, m in enumerate(measures):
        ts = getattr(m, "timeSignature", None)
        if i > 0 and ts is not None and ts.ratioString != meter_str:
            nxt = measures[i + 1] if i + 1 < len(measures) else None
            nxt_ts = getattr(nxt, "timeSignature", None)
            lasting = nxt is not None and (nxt_ts is None or nxt_ts.ratioString != meter_str)
            if lengths[i] >= bar_ql or lasting:
                return
        length = lengths[i]
        in_bar = cursor % bar_ql
        if length >= bar_ql:
            if in_bar:
                cursor += bar_ql - in_bar
            start = cursor
            cursor += length
            if cursor % bar_ql:
                cursor += bar_ql - cursor % bar_ql
        elif in_bar:
            if in_bar + length > bar_ql:
                cursor += bar_ql - in_bar
            start = cursor
            cursor += length
        else:
            nxt_len = lengths[i + 1] if i + 1 < len(lengths) else None
            if nxt_len is not None and length + nxt_len == bar_ql:
                start = cursor  # first half of a split bar
                cursor += length
            elif nxt_len is not None or i == 0:
                start = cursor + bar_ql - length  # pickup: ends on the next bar line
                cursor += bar_ql
            else:
                start = cursor  # a short last bar
                cursor += length
        for n in m.flatten().notes:
            yield start + Fraction(n.offset).limit_denominator(96), n
