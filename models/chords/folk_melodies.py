"""Folk melodies without chords, labelled by our own offline harmonizer: a training source for the offline reader
(`companion train harmony --reader --with-folk-melodies`), so it hears folk tunes as well as pop songs and lead
sheets.

The music21 corpus ships thousands of European folk songs (the Essen collection's German, Lorraine, Luxembourg
and other songs, Haydn's folk-song settings' tunes, Aird's Scottish airs, miscFolk's fife and Northumbrian tunes)
with no chord symbols. Each tune is read as a melody and harmonized by a teacher, a chord checkpoint's offline
decoder (`decode.decode_offline`: its reader, the melody fit, the rule where it is unsure, the cadences, the
harmonic rhythm); the reader then learns to read such melodies the way the whole decoder does ("self-training").
The labels are ours, never a human's: they can teach the reader folk phrasing and the decoder's structure, not
harmony the teacher does not already have. A tune is left out if it is one of the held-out or valid songs under
another name (same title, or the same first 24 melody intervals: `tune_fingerprints`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from models.chords.data import Song, interval_key, read_scores, score_song, song_title, title_key

SOURCE = "folkmel"
CORPUS_FOLDERS = ("essenFolksong", "airdsAirs", "miscFolk")
SKIP_FILES = ("han1.abc", "han2.abc", "test0.abc", "test1.abc", "testd.abc", "teste.abc", "variant0.abc")
"""Essen's Chinese songs (another scale and phrasing than the folk set's) and its test and variant files."""


def corpus_files() -> list[Path]:
    import music21

    corpus = Path(music21.__file__).parent / "corpus"
    return sorted(p for folder in CORPUS_FOLDERS for p in (corpus / folder).glob("*.abc") if p.name not in SKIP_FILES)


def tune_fingerprints(songs: Iterable[Song]) -> tuple[set[str], set[bytes]]:
    """The titles and the opening intervals of `songs` (`data.song_title`, `data.interval_key`)."""
    songs = list(songs)
    return {song_title(s.song_id) for s in songs} - {""}, {interval_key(s) for s in songs}


def _read_file(path: str) -> list[tuple[Song, str]]:
    """Every tune of one ABC file, unlabelled, with its title."""
    out = []
    name = Path(path).name
    for i, score in enumerate(read_scores(Path(path))):
        song = score_song(score, f"{SOURCE}/{name}#{i}", SOURCE, need_chords=False)
        if song is not None:
            out.append((song, (score.metadata.title if score.metadata is not None else "") or ""))
    return out


def read_melodies(files: list[Path], workers: int = 2) -> list[tuple[Song, str]]:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [tune for tunes in pool.map(_read_file, [str(f) for f in files]) for tune in tunes]


def label(song: Song, teacher: object) -> Song:
    """The song with the teacher's offline chords, one per 16th step (change_every "beat", as evaluated)."""
    from models.chords.decode import decode_offline

    slots = decode_offline(teacher, song.melody, song.slot_pos, song.steps_per_slot, song.key, "beat")  # type: ignore[arg-type]
    chords = np.full(len(song.melody), -1, dtype=np.int16)  # steps past the last whole slot: no chord
    chords[:len(slots) * song.steps_per_slot] = np.repeat(slots, song.steps_per_slot)
    return Song(song.song_id, SOURCE, song.melody, song.onset, chords, song.slot_pos, song.steps_per_slot, song.key)


def build_folk_melody_songs(teacher_path: Path, kept_out: list[Song], workers: int = 2,
                            files: list[Path] | None = None) -> tuple[list[Song], dict[str, object]]:
    """The corpus's folk tunes (or those of `files`) labelled by the teacher checkpoint, none of them one of
    `kept_out` (the held-out and valid songs); and a report."""
    from models.chords.model import load_stepper

    started = time.monotonic()
    tunes = read_melodies(corpus_files() if files is None else files, workers)
    titles, openings = tune_fingerprints(kept_out)
    kept = [song for song, title in tunes if title_key(title) not in titles and interval_key(song) not in openings]
    teacher = load_stepper(teacher_path)
    songs = [label(song, teacher) for song in kept]
    return songs, {"songs": {SOURCE: len(songs)}, "read": len(tunes), "left_out_as_kept_out": len(tunes) - len(kept),
                   "teacher": str(teacher_path), "seconds": round(time.monotonic() - started, 1)}
