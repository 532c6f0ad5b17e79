"""JSB chorales as chord-labelled melodies (a training source for the offline reader, `--with-jsb`).

Bach's four-part harmonizations of hymn tunes (`../shared/data/jsb`, the benchmark's 16th-note grid; only its
train part is read). The melody is the soprano; each beat's chord is the vocabulary chord (vocab.QUALITIES)
best matching the pitch classes sounding over the beat, duration-weighted: the weighted Jaccard between the
chord's tones and each pitch class's share of the beat (a passing 16th counts a quarter), the bass's pitch
class breaking ties for the root, then the chord with fewer tones. A beat whose best match is under
MIN_JACCARD (or silent) is "no chord", masked in training. The grid has no meter: every chorale is read in
4/4, its bars ending where the chorale ends (a pickup of `length % 4` beats). The key is estimated from the
melody (features.melody_key), as for every other source.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from models.chords import vocab
from models.chords.data import DATA_ROOT, Song, _slot_positions
from models.chords.features import melody_key

MIN_JACCARD = 0.5  # a beat matching no vocabulary chord at least this well is "no chord"
STEPS_PER_BEAT = 4  # the grid is in 16ths; a slot is a quarter
BEATS_PER_BAR = 4
SOURCE = "jsb"
JSB_FILE = Path("jsb") / "Jsb16thSeparated.json"  # under the data root
_TONES = np.array([[pc in vocab.chord_pcs(i) for pc in range(12)] for i in range(vocab.N_CHORDS)], dtype=np.float64)


def beat_chord(voices: np.ndarray) -> int:
    """The chord class of one beat: `voices` (steps, voices) MIDI pitches, -1 where a voice is silent, the
    lowest voice last. vocab.NO_CHORD if nothing sounds or no chord matches at least MIN_JACCARD."""
    voices = np.asarray(voices)
    share = np.zeros(12)
    for step in voices:
        share[np.unique(step[step >= 0] % 12)] += 1.0 / len(voices)
    if not share.any():
        return vocab.NO_CHORD
    jaccard = (_TONES @ share) / (_TONES.sum(1) + (1.0 - _TONES) @ share)
    bass_steps = [step[step >= 0][-1] % 12 for step in voices if (step >= 0).any()]
    bass = int(np.bincount(bass_steps, minlength=12).argmax())
    best = max(range(vocab.N_CHORDS), key=lambda i: (round(float(jaccard[i]), 9), vocab.root_of(i) == bass,
                                                     -_TONES[i].sum(), -i))
    return best if jaccard[best] >= MIN_JACCARD else vocab.NO_CHORD


def chorale_song(song_id: str, steps: np.ndarray) -> Song:
    """One chorale (steps, [S, A, T, B]) on the grid: the soprano as melody, a chord per beat."""
    steps = np.asarray(steps, dtype=np.int16)
    n_slots = len(steps) // STEPS_PER_BEAT
    steps = steps[:n_slots * STEPS_PER_BEAT]
    melody = steps[:, 0].copy()
    # the grid repeats a held pitch at every step: a note starts where the pitch changes or after a rest
    onset = (melody >= 0) & np.concatenate([[True], melody[1:] != melody[:-1]])
    chords = np.repeat([beat_chord(steps[s * STEPS_PER_BEAT:(s + 1) * STEPS_PER_BEAT]) for s in range(n_slots)],
                       STEPS_PER_BEAT).astype(np.int16)
    pos = _slot_positions(n_slots, n_slots % BEATS_PER_BAR, BEATS_PER_BAR)
    return Song(song_id, SOURCE, melody, onset, chords, pos, STEPS_PER_BEAT, melody_key(melody))


def build_jsb_songs(root: Path = DATA_ROOT, part: str = "train") -> tuple[list[Song], dict[str, object]]:
    """The JSB benchmark's train chorales as songs (training reads only these; `part` "valid": the valid
    chorales, for `companion eval harmony --split jsb-valid`), and a report (how many beats had no chord)."""
    started = time.monotonic()
    pieces = json.loads((root / JSB_FILE).read_text())[part]
    songs = [chorale_song(f"jsb/{part}/{i:03d}", np.array(piece)) for i, piece in enumerate(pieces)]
    slots = np.concatenate([s.chords[::STEPS_PER_BEAT] for s in songs])
    return songs, {"songs": {SOURCE: len(songs)}, "beats": len(slots),
                   "no_chord_share": round(float(np.mean(slots == vocab.NO_CHORD)), 3),
                   "seconds": round(time.monotonic() - started, 1)}
