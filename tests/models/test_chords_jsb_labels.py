"""JSB chorales as chord-labelled melodies: a chord per beat from the four voices (models/chords/jsb_labels.py)."""

from __future__ import annotations

import numpy as np

from models.chords import vocab
from models.chords.jsb_labels import beat_chord, chorale_song


def _beat(*steps: tuple[int, int, int, int]) -> np.ndarray:
    return np.array(steps, dtype=np.int16)


def test_a_held_triad_is_its_chord() -> None:
    assert beat_chord(_beat(*[(72, 67, 64, 48)] * 4)) == vocab.chord_index(0, "")  # C E G over C
    assert beat_chord(_beat(*[(69, 64, 60, 45)] * 4)) == vocab.chord_index(9, "m")  # A C E over A


def test_a_passing_note_does_not_change_the_chord_but_a_held_seventh_does() -> None:
    passing = _beat((72, 67, 64, 48), (74, 67, 64, 48), (76, 67, 64, 48), (76, 67, 64, 48))  # D: a 16th
    assert beat_chord(passing) == vocab.chord_index(0, "")
    seventh = _beat(*[(70, 67, 64, 48)] * 4)  # C E G Bb
    assert beat_chord(seventh) == vocab.chord_index(0, "7")


def test_the_bass_breaks_a_tie_for_the_root() -> None:
    # C and E alone match C major and A minor equally well (2 of 3 tones): the bass names the root
    assert beat_chord(_beat(*[(76, 72, 64, 48)] * 4)) == vocab.chord_index(0, "")
    assert beat_chord(_beat(*[(76, 72, 64, 57)] * 4)) == vocab.chord_index(9, "m")  # A in the bass: A C E


def test_silence_and_a_cluster_are_no_chord() -> None:
    assert beat_chord(_beat(*[(-1, -1, -1, -1)] * 4)) == vocab.NO_CHORD
    cluster = _beat(*[(61, 60, 59, 58)] * 4)  # C# C B Bb: no vocabulary chord reaches Jaccard 0.5
    assert beat_chord(cluster) == vocab.NO_CHORD


def test_a_chorale_song_is_the_soprano_with_a_chord_per_beat_in_bars_ending_with_it() -> None:
    g7, c = [(74, 71, 65, 55)] * 4, [(72, 67, 64, 48)] * 4
    steps = np.array(c + g7 + c + c + g7 + [(71, 67, 62, 43)] * 4 + c + c + c + [(-1, 67, 64, 48)] * 3,
                     dtype=np.int16)  # 9 beats and 3 steps left over
    song = chorale_song("jsb/train/x", steps)
    assert song.source == "jsb" and song.split == "train" and song.steps_per_slot == 4
    assert len(song.melody) == 36 and song.melody[0] == 72 and song.melody[4] == 74
    assert list(song.onset[:6]) == [True, False, False, False, True, False]  # a held pitch is one note
    assert song.chords[4] == vocab.chord_index(7, "7") and song.chords[0] == vocab.chord_index(0, "")
    assert (song.chords.reshape(-1, 4) == song.chords.reshape(-1, 4)[:, :1]).all()
    assert list(song.slot_pos) == [3, 0, 1, 2, 3, 0, 1, 2, 3]  # 4/4 with the last bar full: a 1-beat pickup
    assert song.key == (0, "major")
