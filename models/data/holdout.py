"""The collection held out of training entirely (for ``companion eval continuation``) and its duplicates.

Folk collections share tunes: a reel in Ryan's Mammoth may be in O'Neill's too, under the same title or with
the same opening. Every piece of the held-out collection, and every other piece that looks like one of them
(same normalised title, or the same first ``OPENING_NOTES`` melodic intervals), is kept out of training, valid
and test alike; the held-out tunes are only ever prompts and truths for the evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.data.pieces import Piece

HELD_OUT_COLLECTION = "ryansMammoth"  # 1,059 tunes: reels, jigs, hornpipes, strathspeys, waltzes, marches, airs
OPENING_NOTES = 9  # the opening signature: the melodic intervals between the first 9 top-voice notes
_GENERIC_TITLES = {"", "untitled", "reel", "jig", "hornpipe", "waltz", "march", "air", "polka", "strathspey",
                   "slip jig", "set dance", "song", "tune", "dance", "no title", "anonymous"}


def collection_of(piece_id: str) -> str:
    """The corpus folder of a piece id (``music21:ryansMammoth/x.abc#0`` -> ``ryansMammoth``), '' if none."""
    source = piece_id.split(":", 1)[1] if piece_id.startswith("music21:") else ""
    return source.split("/", 1)[0] if "/" in source else ""


def in_held_out_collection(piece_id: str, collection: str = HELD_OUT_COLLECTION) -> bool:
    return collection_of(piece_id) == collection


def normalise_title(title: str) -> str:
    """Lower case, letters and digits only, no leading article, no ' -- Reel' style suffix."""
    title = title.split("--")[0].lower()
    title = re.sub(r"[^a-z0-9 ]+", " ", title)
    words = [w for w in title.split() if w not in ("the", "a", "an")]
    return " ".join(words)


def abc_titles(text: str) -> list[str]:
    """Every ``T:`` field of one ABC tune (alternative titles included), normalised, generic ones dropped."""
    found = (normalise_title(m) for m in re.findall(r"(?m)^T:\s*(.*?)\s*$", text))
    return sorted({t for t in found if t not in _GENERIC_TITLES and len(t) > 3})


def corpus_titles(piece_ids: Iterable[str], root: Path | None = None) -> dict[str, str]:
    """Titles (``' | '``-joined) of the ABC pieces among ``piece_ids``, read from the corpus text (no parse)."""
    from models.data.music21_corpus import corpus_root, split_abc

    root = root or corpus_root()
    by_file: dict[str, list[str]] = {}
    for pid in piece_ids:
        if pid.startswith("music21:") and ".abc#" in pid:
            by_file.setdefault(pid.split(":", 1)[1].split("#", 1)[0], []).append(pid)
    out: dict[str, str] = {}
    for source, ids in by_file.items():
        path = root / source
        if not path.is_file():
            continue
        _, tunes = split_abc(path.read_bytes().decode("latin-1"))
        for pid in ids:
            index = int(pid.split("#", 1)[1].split("/", 1)[0])
            if index < len(tunes):
                out[pid] = " | ".join(abc_titles(tunes[index]))
    return out


def opening_signature(notes: np.ndarray, count: int = OPENING_NOTES) -> tuple[int, ...] | None:
    """The intervals between the first ``count`` top-voice notes (transposition-free); None if fewer notes.

    ``notes`` is a piece's (N, 4) array of (onset, duration, pitch, velocity); a chord counts by its top.
    """
    if len(notes) == 0:
        return None
    onsets = notes[:, 0]
    tops: list[int] = []
    for onset in np.unique(onsets):
        tops.append(int(notes[onsets == onset, 2].max()))
        if len(tops) == count:
            break
    if len(tops) < count:
        return None
    return tuple(b - a for a, b in zip(tops, tops[1:], strict=False))


@dataclass
class HeldOut:
    """A corpus divided for the evaluation: the held-out tunes, their look-alikes elsewhere, the rest."""

    held_out: list[Piece] = field(default_factory=list)
    duplicates: list[tuple[Piece, str]] = field(default_factory=list)  # (piece, why it counts as one)
    kept: list[Piece] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {"held_out_collection": HELD_OUT_COLLECTION, "held_out_pieces": len(self.held_out),
                "duplicates_excluded": len(self.duplicates),
                "by_title": sum(1 for _, why in self.duplicates if why.startswith("title")),
                "by_opening": sum(1 for _, why in self.duplicates if why.startswith("opening"))}


def split_held_out(pieces: Sequence[Piece], titles: dict[str, str] | None = None,
                   collection: str = HELD_OUT_COLLECTION) -> HeldOut:
    """Held-out collection, duplicates of its tunes in other collections, and the pieces left to learn from.

    ``titles`` (piece id -> ``' | '``-joined normalised titles, as ``corpus_titles`` gives) adds the title
    match; without it only the openings are compared.
    """
    titles = titles or {}
    out = HeldOut()
    held_titles: set[str] = set()
    held_openings: set[tuple[int, ...]] = set()
    for p in pieces:
        if in_held_out_collection(p.piece_id, collection):
            out.held_out.append(p)
            held_titles.update(t for t in titles.get(p.piece_id, "").split(" | ") if t)
            sig = opening_signature(p.notes)
            if sig is not None:
                held_openings.add(sig)
    for p in pieces:
        if in_held_out_collection(p.piece_id, collection):
            continue
        same_title = sorted(held_titles.intersection(t for t in titles.get(p.piece_id, "").split(" | ") if t))
        if same_title:
            out.duplicates.append((p, f"title {same_title[0]!r}"))
        elif opening_signature(p.notes) in held_openings:
            out.duplicates.append((p, "opening intervals"))
        else:
            out.kept.append(p)
    return out
