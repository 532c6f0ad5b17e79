"""The folk-melody training source (`--with-folk-melodies`): music21's unlabelled folk tunes, labelled by a chord
checkpoint's offline decoder, never one of the songs that choose or judge, and drawn as often as asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.chords import vocab
from models.chords.data import Song, interval_key, title_key
from models.chords.folk_melodies import SOURCE, build_folk_melody_songs, corpus_files, read_melodies, tune_fingerprints
from models.chords.model import SHIPPED_CHECKPOINT
from models.chords.stepper import ChordConfig
from models.chords.train import ChordTask, is_valid

music21 = pytest.importorskip("music21")
TEST_FILE = Path(music21.__file__).parent / "corpus" / "essenFolksong" / "testd.abc"  # 8 German songs


def _song(song_id: str, source: str, melody: list[int]) -> Song:
    tune = np.repeat(np.array(melody, dtype=np.int16), 4)
    n = len(tune) - len(tune) % 4
    return Song(song_id, source, tune[:n], np.r_[True, tune[1:n] != tune[:n - 1]],
                np.full(n, vocab.chord_index(0, ""), dtype=np.int16), (np.arange(n // 4) % 4).astype(np.int8), 4,
                (0, "major"))


def test_the_corpus_files_are_european_folk_songs_and_airs() -> None:
    files = corpus_files()
    assert len(files) >= 30 and {f.parent.name for f in files} == {"essenFolksong", "airdsAirs", "miscFolk"}
    assert not {"han1.abc", "han2.abc", "testd.abc"} & {f.name for f in files}  # Chinese songs, test files


def test_tunes_are_read_unlabelled_and_fingerprinted() -> None:
    tunes = read_melodies([TEST_FILE], workers=1)
    assert len(tunes) == 8
    song, title = tunes[0]
    assert song.source == SOURCE and song.split == "train" and not is_valid(song.song_id)
    assert (song.chords == vocab.NO_CHORD).all() and (song.melody >= 0).sum() > 16
    assert title_key(title) == "ichhabdienachtgetrumet"
    titles, openings = tune_fingerprints([_song("openewld/[Traditional]/Ich hab die Nacht getrumet", "folk",
                                                [60, 62])])
    assert title_key(title) in titles and interval_key(song) not in openings
    assert tune_fingerprints([song])[0] == set()  # a music21 tune's id carries no title


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped chord model")
def test_held_out_tunes_are_left_out_and_the_rest_labelled_by_the_teacher() -> None:
    tunes = read_melodies([TEST_FILE], workers=1)
    # a held-out song with the first tune's title, and one with the second tune's opening under another name
    second = tunes[1][0]
    same_opening = Song("pop909/999", "pop909", second.melody, second.onset, second.chords, second.slot_pos,
                        second.steps_per_slot, second.key)
    kept_out = [_song(f"openewld/[Traditional]/{tunes[0][1]}", "folk", [60, 62, 64]), same_opening]
    songs, report = build_folk_melody_songs(SHIPPED_CHECKPOINT, kept_out, workers=1, files=[TEST_FILE])
    assert report["read"] == 8 and report["left_out_as_kept_out"] == 2 and len(songs) == 6
    assert {s.song_id for s in songs}.isdisjoint({tunes[0][0].song_id, second.song_id})
    for song in songs:
        labelled = song.chords[:len(song.slot_pos) * song.steps_per_slot]
        assert ((labelled >= 0) & (labelled < vocab.N_CHORDS)).all()  # a chord on every step the slots cover
        # the teacher's chords hold for a slot at least, and the tune's last note lands on a tonic chord
        last = int(np.nonzero(song.melody >= 0)[0][-1])
        assert vocab.root_of(int(song.chords[last])) == song.key[0] or song.melody[last] % 12 != song.key[0]


def test_folk_windows_are_drawn_the_share_asked_for() -> None:
    import torch

    real = [_song(f"pop909/{i:03d}", "pop909", [60, 62, 64, 65] * 8) for i in range(40)]
    folk = [_song(f"{SOURCE}/x.abc#{i}", SOURCE, [67, 65, 64, 62] * 8) for i in range(200)]
    task = ChordTask(real + folk, ChordConfig(n_hidden=8, n_embd=4), "test", folk_share=0.25)
    assert [sorted({task.train[i].song_id.split("/")[0] for i in pool}) for pool in task.pools] == \
        [["pop909"], [SOURCE]]
    assert task.pool_weights == pytest.approx([0.75, 0.25])
    assert all(p.song_id.startswith("pop909/") for p in task.valid)  # folk tunes never choose the step
    x = task.train_batch(0, torch.Generator().manual_seed(0), 400)[0]
    from_folk = float((x[:, 0, :12].argmax(-1) == 7).float().mean())  # the first note: G (folk) or C (pop)
    assert 0.18 < from_folk < 0.32
    without = ChordTask(real, ChordConfig(n_hidden=8, n_embd=4), "test", folk_share=0.25)
    assert len(without.pools) == 1 and without.pool_weights == [1.0]
