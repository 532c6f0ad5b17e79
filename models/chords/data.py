"""Chord-annotated melodies on a 16th grid: POP909 (MIDI + automatic labels, checked against the piano),
OpenEWLD lead sheets and ABC folk tunes with chord symbols (music21); the split, held out by song.

A `Song` holds, per 16th step, the melody pitch sounding (-1 rest), whether a note starts there, and the
annotated chord class (vocab.NO_CHORD where none); per slot (a beat: a quarter, or a dotted quarter in 6/8,
9/8, 12/8) its position in the bar. The key is the one estimated from the whole melody (features.melody_key),
as `companion generate harmonize` estimates it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from models.chords import vocab
from models.chords.features import melody_key

log = logging.getLogger("companion")

DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CACHE_VERSION = 3  # 3: the key from features.melody_key (the last note counts)
HELD_OUT_PERCENT = 10  # POP909 and OpenEWLD songs held out of training, by a hash of the song id
MIN_PIANO_FIT = 0.55  # a POP909 song whose labels cover less of its piano part than this is not trusted
FOLK_FOLDERS = ("[Traditional]", "[Traditional]-[Unknown]")  # OpenEWLD's traditional songs: the folk test set
FOLK_ABC = ("nottingham-dataset/reelsa-c.abc",)  # the music21 corpus's folk tunes with chords on every bar


@dataclass
class Song:
    song_id: str
    source: str  # "pop909", "openewld", "folk", "jsb" (jsb_labels.py), "folkmel" (folk_melodies.py)
    melody: np.ndarray  # (T,) int16 pitch sounding at each 16th step, -1 rest
    onset: np.ndarray  # (T,) bool: a melody note starts on this step
    chords: np.ndarray  # (T,) int16 chord class, vocab.NO_CHORD where none
    slot_pos: np.ndarray  # (S,) int8 position of each slot in its bar (0 = downbeat)
    steps_per_slot: int
    key: tuple[int, str]  # estimated from the whole melody (tonic pc, "major" | "minor"): features.melody_key

    @property
    def split(self) -> str:
        """'folk' (the folk test set), 'test' (held out) or 'train'."""
        if self.source == "folk":
            return "folk"
        if self.source in TRAIN_ONLY:  # JSB's train chorales; unlabelled folk tunes our harmonizer labelled
            return "train"
        h = int.from_bytes(hashlib.sha1(self.song_id.encode()).digest()[:8], "big") % 100
        return "test" if h < HELD_OUT_PERCENT else "train"


def _slot_positions(n_slots: int, first_bar_slot: int, slots_per_bar: int) -> np.ndarray:
    return ((np.arange(n_slots) - first_bar_slot) % slots_per_bar).astype(np.int8)


# --- POP909 ------------------------------------------------------------------------------------------------


def _midi_tracks_s(path: Path, names: tuple[str, ...]) -> dict[str, list[tuple[float, float, int]]]:
    """(start s, end s, pitch) of the notes of the named tracks of a MIDI file (one parse)."""
    import mido

    midi = mido.MidiFile(path)
    tempo_changes: list[tuple[int, int]] = [(0, 500000)]
    for track in midi.tracks:
        t = 0
        for msg in track:
            t += msg.time
            if msg.type == "set_tempo":
                tempo_changes.append((t, msg.tempo))
    tempo_changes.sort()

    def seconds(tick: int) -> float:
        s, last_tick, tempo = 0.0, 0, tempo_changes[0][1]
        for change_tick, change_tempo in tempo_changes:
            if change_tick > tick:
                break
            s += (change_tick - last_tick) * tempo / 1e6 / midi.ticks_per_beat
            last_tick, tempo = change_tick, change_tempo
        return s + (tick - last_tick) * tempo / 1e6 / midi.ticks_per_beat

    out: dict[str, list[tuple[float, float, int]]] = {name: [] for name in names}
    for track in midi.tracks:
        name = track.name.strip().upper()
        if name not in out:
            continue
        t, opened = 0, {}
        for msg in track:
            t += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                opened[msg.note] = t
            elif msg.type in ("note_off", "note_on") and msg.note in opened:
                start = opened.pop(msg.note)
                out[name].append((seconds(start), seconds(t), msg.note))
    return {name: sorted(notes) for name, notes in out.items()}


def load_pop909_song(folder: Path) -> tuple[Song | None, float]:
    """One POP909 song on the grid of its annotated beats, and how well its chord labels fit its piano part."""
    beats = np.loadtxt(folder / "beat_midi.txt", ndmin=2)
    chords_raw = [line.split("\t") for line in (folder / "chord_midi.txt").read_text().splitlines() if line.strip()]
    tracks = _midi_tracks_s(folder / f"{folder.name}.mid", ("MELODY", "PIANO"))
    melody_s, piano_s = tracks["MELODY"], tracks["PIANO"]
    beat_times = beats[:, 0]
    if len(beat_times) < 16 or not melody_s:
        return None, 0.0
    # 4 steps per beat, interpolated between annotated beats (the tempo drifts)
    step_times = np.concatenate([np.linspace(a, b, 4, endpoint=False)
                                 for a, b in zip(beat_times[:-1], beat_times[1:], strict=True)])
    n = len(step_times)
    downbeats = np.nonzero(beats[:-1, 2] > 0.5)[0]
    first_bar = int(downbeats[0]) if len(downbeats) else 0
    gaps = np.diff(downbeats)
    slots_per_bar = int(np.bincount(gaps).argmax()) if len(gaps) else 4
    # position in bar: beats since the last annotated downbeat
    pos = np.zeros(n // 4, dtype=np.int8)
    since = (-first_bar) % max(1, slots_per_bar) - 1
    for i in range(n // 4):
        since = 0 if beats[i, 2] > 0.5 else since + 1
        pos[i] = min(since, 7)

    def step_of(t: float) -> int:
        return int(np.clip(np.searchsorted(step_times, t - 0.06), 0, n - 1))  # within ~a 32nd early counts

    melody = np.full(n, -1, dtype=np.int16)
    onset = np.zeros(n, dtype=bool)
    for start, end, pitch in melody_s:
        a, b = step_of(start), max(step_of(start) + 1, step_of(end))
        melody[a:b] = pitch
        onset[a] = True
    chords = np.full(n, vocab.NO_CHORD, dtype=np.int16)
    bad = 0
    for start, end, label in chords_raw:
        index = vocab.parse_pop909(label)
        if index is None:
            bad += 1
            continue
        a, b = step_of(float(start)), step_of(float(end))
        chords[a:max(a, b)] = index
    # check the automatic labels against the piano part: duration share of piano notes in the labelled chord
    fit, total = 0.0, 0.0
    for start, end, pitch in piano_s:
        index = chords[step_of(start)]
        if index == vocab.NO_CHORD:
            continue
        total += end - start
        fit += (end - start) * (pitch % 12 in vocab.chord_pcs(int(index)))
    song = Song(f"pop909/{folder.name}", "pop909", melody, onset, chords, pos, 4, melody_key(melody))
    return song, fit / total if total else 0.0


# --- scores: OpenEWLD MusicXML (read directly), ABC tunes (music21) ------------------------------------------


def _grid_song(song_id: str, source: str, notes: list[tuple[float, float, int]], symbols: list[tuple[float, int]],
               beats: int, beat_type: int, pickup_quarters: float, need_chords: bool = True) -> Song | None:
    """A song from notes and chord symbols timed in quarter notes (a symbol holds until the next); None if it is
    under a bar of 16ths long, or has no symbol and `need_chords`."""
    compound = beat_type == 8 and beats % 3 == 0 and beats > 3
    steps_per_slot = 6 if compound else max(1, 16 // beat_type)
    slots_per_bar = max(1, round(beats * 16 / beat_type) // steps_per_slot)
    end_steps = round(max([e for _, e, _ in notes] + [0]) * 4)
    if end_steps < 16 or (need_chords and not symbols):
        return None
    melody = np.full(end_steps, -1, dtype=np.int16)
    onset = np.zeros(end_steps, dtype=bool)
    for start, end, pitch in notes:
        a = round(start * 4)
        b = max(a + 1, round(end * 4))
        melody[a:b] = pitch
        onset[min(a, end_steps - 1)] = True
    chords = np.full(end_steps, vocab.NO_CHORD, dtype=np.int16)
    marks = sorted((round(t * 4), c) for t, c in symbols)
    ends = [step for step, _ in marks[1:]] + [end_steps] if marks else []  # a symbol holds until the next
    for (step, index), next_step in zip(marks, ends, strict=True):
        chords[step:next_step] = index
    pickup = round(pickup_quarters * 4)
    first_bar_slot = -(-pickup // steps_per_slot) if pickup else 0
    pos = _slot_positions(end_steps // steps_per_slot, first_bar_slot, slots_per_bar)
    return Song(song_id, source, melody, onset, chords, pos, steps_per_slot, melody_key(melody))


def _lead_sheet_song(path: Path, song_id: str, source: str) -> Song | None:
    from models.chords.musicxml import read_lead_sheet

    sheet = read_lead_sheet(path)
    return _grid_song(song_id, source, [(float(a), float(b), p) for a, b, p in sheet.notes],
                      [(float(t), c) for t, c in sheet.symbols], sheet.beats, sheet.beat_type, float(sheet.pickup))


def read_scores(path: Path) -> list:  # type: ignore[type-arg] - music21 Scores
    """The scores of a file (each tune of an ABC file is one)."""
    import music21

    parsed = music21.converter.parse(str(path))
    return list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]


def _score_songs(path: Path, song_id: str, source: str) -> list[Song]:
    """Melody + chord symbols of a score (each tune of an ABC file is a song)."""
    scores = read_scores(path)
    songs = []
    for i, score in enumerate(scores):
        song = score_song(score, song_id if len(scores) == 1 else f"{song_id}#{i}", source)
        if song is not None:
            songs.append(song)
    return songs


def score_song(score, song_id: str, source: str,  # noqa: ANN001 - a music21 Score
               need_chords: bool = True) -> Song | None:
    """One score's melody (its first part) on the grid, with its chord symbols; None without any when
    `need_chords`, else every step "no chord"."""
    import music21

    part = score.parts[0] if score.parts else score
    flat = part.stripTies().flatten()
    signatures = list(flat.getElementsByClass(music21.meter.TimeSignature))
    ts = signatures[0] if signatures else music21.meter.TimeSignature("4/4")
    notes: list[tuple[float, float, int]] = []
    symbols: list[tuple[float, int]] = []
    for element in flat.notesAndRests:
        start = float(element.offset)
        if isinstance(element, music21.harmony.ChordSymbol):
            symbols.append((start, _symbol_class(element)))
        elif isinstance(element, music21.note.Note):
            notes.append((start, start + float(element.quarterLength), element.pitch.midi))
    measures = list(part.getElementsByClass(music21.stream.Measure))
    pickup = 0.0
    if measures and measures[0].paddingLeft:
        pickup = float(ts.barDuration.quarterLength - measures[0].paddingLeft)
    return _grid_song(song_id, source, notes, symbols, ts.numerator, ts.denominator, pickup, need_chords)


def _symbol_class(symbol) -> int:  # noqa: ANN001 - a music21 ChordSymbol
    import music21

    if isinstance(symbol, music21.harmony.NoChord) or symbol.root() is None:
        return vocab.NO_CHORD
    quality = vocab.parse_quality(symbol.chordKind or "major")
    if quality is None:  # an unusual kind: name it by its pitch classes' third and seventh
        pcs = {(p.pitchClass - symbol.root().pitchClass) % 12 for p in symbol.pitches}
        quality = "m" if 3 in pcs and 4 not in pcs else ""
    return vocab.chord_index(symbol.root().pitchClass, quality)


# --- the whole set -------------------------------------------------------------------------------------------


def _pack(songs: list[Song]) -> dict[str, np.ndarray]:
    lengths = np.array([len(s.melody) for s in songs])
    slots = np.array([len(s.slot_pos) for s in songs])
    return {
        "ids": np.array([s.song_id for s in songs]), "sources": np.array([s.source for s in songs]),
        "lengths": lengths, "slots": slots, "sps": np.array([s.steps_per_slot for s in songs]),
        "keys": np.array([[s.key[0], s.key[1] == "minor"] for s in songs]),
        "melody": np.concatenate([s.melody for s in songs]), "onset": np.concatenate([s.onset for s in songs]),
        "chords": np.concatenate([s.chords for s in songs]), "pos": np.concatenate([s.slot_pos for s in songs]),
    }


def _unpack(arrays: dict[str, np.ndarray]) -> list[Song]:
    songs, a, b = [], 0, 0
    for i, song_id in enumerate(arrays["ids"]):
        n, s = int(arrays["lengths"][i]), int(arrays["slots"][i])
        tonic, minor = arrays["keys"][i]
        songs.append(Song(str(song_id), str(arrays["sources"][i]), arrays["melody"][a:a + n],
                          arrays["onset"][a:a + n], arrays["chords"][a:a + n], arrays["pos"][b:b + s],
                          int(arrays["sps"][i]), (int(tonic), "minor" if minor else "major")))
        a, b = a + n, b + s
    return songs


def title_key(title: str) -> str:
    """A title as compared between collections: its ASCII letters, lower case."""
    return re.sub(r"[^a-z]", "", title.lower())


def interval_key(song: Song, n: int = 24) -> bytes:
    """The first `n` melody intervals between note onsets: a tune filed twice under two names has the same."""
    onsets = song.melody[np.nonzero(song.onset & (song.melody >= 0))[0]].astype(np.int64)
    return np.diff(onsets[:n + 1]).astype(np.int8).tobytes()


def song_title(song_id: str) -> str:
    """The title in a song id ("openewld/Composer/Title"; "music21/file.abc#3" has none: "")."""
    return "" if "#" in song_id else title_key(song_id.split("/")[-1])


TRAIN_ONLY = ("jsb", "folkmel")  # extra training sources: never held out, never valid
SOURCES = ("pop909", "openewld")  # the folk set is read with OpenEWLD (its traditional songs) + music21's ABC


def build_songs(source: str, root: Path = DATA_ROOT, limit: int | None = None) -> tuple[list[Song], dict[str, object]]:
    """Read one source ("pop909", or "openewld" with the folk set); the songs and a report of what was dropped."""
    started = time.monotonic()
    songs: list[Song] = []
    report: dict[str, object] = {"pop909_untrusted": [], "unreadable": []}
    if source == "pop909":
        for folder in sorted((root / "pop909" / "POP909").iterdir())[:limit]:
            if not folder.is_dir():
                continue
            song, fit = load_pop909_song(folder)
            if song is None or fit < MIN_PIANO_FIT:
                report["pop909_untrusted"].append(f"{folder.name} ({fit:.2f})")
                continue
            songs.append(song)
    else:
        import music21

        for path in sorted((root / "openewld" / "dataset").rglob("*.mxl"))[:limit]:
            song_id = f"openewld/{path.parent.parent.name}/{path.parent.name}"
            kind = "folk" if path.parent.parent.name in FOLK_FOLDERS else "openewld"
            try:
                song = _lead_sheet_song(path, song_id, kind)
            except (ValueError, KeyError, StopIteration, zipfile.BadZipFile, ElementTree.ParseError) as err:
                report["unreadable"].append(f"{song_id}: {type(err).__name__}: {err}")
                continue
            if song is not None and not any(s.song_id == song_id for s in songs):  # a song filed twice
                songs.append(song)
        corpus = Path(music21.__file__).parent / "corpus"
        for name in FOLK_ABC:
            songs.extend(_score_songs(corpus / name, f"music21/{name}", "folk"))
    report["seconds"] = round(time.monotonic() - started, 1)
    report["songs"] = {src: sum(s.source == src for s in songs) for src in ("pop909", "openewld", "folk")}
    return songs, report


def save_songs(path: Path, songs: list[Song]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, version=np.array(CACHE_VERSION), **_pack(songs))


def load_songs(path: Path) -> list[Song]:
    with np.load(path, allow_pickle=False) as arrays:
        if int(arrays["version"]) != CACHE_VERSION:
            raise ValueError(f"{path}: built by another version of the chord data code; rebuild it")
        return _unpack({k: arrays[k] for k in arrays.files})
