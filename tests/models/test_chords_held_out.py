"""The chord model never trains on a held-out song: the split, the training task, the shipped checkpoint's
list, and the lead sheets themselves (a held-out tune filed a second time under another name)."""

from __future__ import annotations

import numpy as np
import pytest

from models.checkpoint import load_checkpoint
from models.chords import vocab
from models.chords.data import DATA_ROOT, Song, build_songs, interval_key, title_key
from models.chords.model import SHIPPED_CHECKPOINT
from models.chords.stepper import ChordConfig
from models.chords.train import ChordTask


def _song(song_id: str, source: str, shift: int = 0) -> Song:
    melody = (np.repeat([60, 62, 64, 65, 67, 65, 64, 62], 8) + shift).astype(np.int16)
    chords = np.full(len(melody), vocab.chord_index(0, ""), dtype=np.int16)
    pos = (np.arange(len(melody) // 4) % 4).astype(np.int8)
    return Song(song_id, source, melody, np.r_[True, melody[1:] != melody[:-1]], chords, pos, 4, (0, "major"))


def test_the_training_task_holds_out_the_test_and_folk_songs() -> None:
    songs = [_song(f"pop909/{i:03d}", "pop909", i % 5) for i in range(1, 120)]
    songs += [_song(f"openewld/X/song {i}", "openewld") for i in range(60)]
    songs += [_song(f"openewld/[Traditional]/tune {i}", "folk") for i in range(5)]
    held = {s.song_id for s in songs if s.split != "train"}
    assert {s.split for s in songs} == {"train", "test", "folk"}  # the hash split holds some out of each source
    task = ChordTask(songs, ChordConfig(n_hidden=8, n_embd=4), "test")
    used = {p.song_id for p in task.train + task.valid}  # every song a training window or the step choice reads
    assert used == {s.song_id for s in songs} - held
    assert set(task.held_out) == held
    assert all(s.split == "folk" for s in songs if s.source == "folk")
    balanced = ChordTask(songs, ChordConfig(n_hidden=8, n_embd=4), "test", balance=True)
    assert [{balanced.train[i].song_id.split("/")[0] for i in pool} for pool in balanced.pools] == \
        [{"pop909"}, {"openewld"}]  # windows drawn per source, from the same training songs
    assert {p.song_id for p in balanced.train} == {p.song_id for p in task.train}


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped chord model")
def test_the_shipped_model_lists_what_it_held_out() -> None:
    _, meta = load_checkpoint(SHIPPED_CHECKPOINT, kind="chords")
    held = meta["data"]["held_out_songs"]
    folk = [h for h in held if "[Traditional]" in h or h.startswith("music21/")]
    assert len(folk) >= 45 and len(held) - len(folk) >= 100
    for song_id in held:  # each listed song is one the split keeps out of training
        source = "folk" if song_id in folk else song_id.split("/")[0]
        assert _song(song_id, source).split != "train", song_id


@pytest.mark.skipif(not (DATA_ROOT / "openewld").is_dir(), reason="the OpenEWLD lead sheets are not here")
def test_no_held_out_lead_sheet_is_also_a_training_song() -> None:
    songs, _ = build_songs("openewld", DATA_ROOT)  # OpenEWLD and the folk set (music21's chord-annotated tunes)
    train = [s for s in songs if s.split == "train"]
    held = [s for s in songs if s.split != "train"]
    assert len(held) >= 80 and train
    train_titles = {title_key(s.song_id.split("/")[-1].split("#")[0]) for s in train}
    train_tunes = {interval_key(s) for s in train}
    for song in held:
        assert title_key(song.song_id.split("/")[-1].split("#")[0]) not in train_titles, song.song_id
        assert interval_key(song) not in train_tunes, song.song_id


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped chord model")
def test_eval_harmony_reports_each_held_out_set_and_all_of_them_paired_with_the_rule(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    import json

    from models.chords.data import CACHE_VERSION, SOURCES, save_songs
    from models.chords.evaluate import eval_main

    def held_out(source: str, n: int) -> list[Song]:
        ids = (f"{source}/{i:03d}" if source == "pop909" else f"openewld/Someone/tune {i}" for i in range(10_000))
        found = (s for s in (_song(i, source, shift=len(i) % 5) for i in ids) if s.split == "test")
        return [next(found) for _ in range(n)]

    folk = [_song(f"openewld/[Traditional]/tune {i}", "folk", i) for i in range(4)]  # read with OpenEWLD's
    made = {"pop909": held_out("pop909", 3), "openewld": held_out("openewld", 2) + folk}
    assert set(made) == set(SOURCES)
    for source, songs in made.items():
        save_songs(tmp_path / f"chord-songs-{source}-v{CACHE_VERSION}.npz", songs)
    assert eval_main(["--cache", str(tmp_path), "--cadences", "melody"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cadences"] == "melody"
    assert [report[k]["songs"] for k in ("folk", "test_pop909", "test_openewld", "held_out_all")] == [4, 3, 2, 9]
    every = report["held_out_all"]
    assert set(every["vs_rule"]) == {"annotation", "model_offline", "model_live"}
    assert every["annotation"]["jaccard"]["mean"] == 1.0  # the songs' own chords, scored against themselves
    for name in ("jaccard", "bass_root"):
        paired = every["vs_rule"]["model_offline"][name]
        assert paired["boot_lo"] <= paired["mean"] <= paired["boot_hi"]


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped chord model")
def test_eval_harmony_reads_the_jsb_valid_chorales_or_says_where_they_are_missing(
        tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    import json

    import models.chords.evaluate as evaluate
    from models.chords.data import CACHE_VERSION, SOURCES, save_songs

    for source in SOURCES:  # a song each: the caches exist, the chorales are read apart
        save_songs(tmp_path / f"chord-songs-{source}-v{CACHE_VERSION}.npz", [_song(f"{source}/1", source)])
    monkeypatch.setattr(evaluate, "DATA_ROOT", tmp_path / "data")
    assert evaluate.eval_main(["--cache", str(tmp_path), "--split", "jsb-valid"]) == 2
    assert "Jsb16thSeparated.json is missing" in capsys.readouterr().err
    # two chorales in C: C E G / G B D / C E G ..., the soprano on top, four 16ths a beat
    beats = [[72, 67, 64, 48], [74, 71, 67, 55], [76, 72, 67, 48], [74, 71, 67, 43]] * 6
    piece = [voices for voices in beats for _ in range(4)]
    (tmp_path / "data" / "jsb").mkdir(parents=True)
    (tmp_path / "data" / "jsb" / "Jsb16thSeparated.json").write_text(json.dumps({"train": [], "valid": [piece] * 2}))
    assert evaluate.eval_main(["--cache", str(tmp_path), "--split", "jsb-valid"]) == 0
    report = json.loads(capsys.readouterr().out)["jsb_valid"]
    assert report["songs"] == 2 and report["annotation"]["bass_root"]["mean"] == 1.0
    assert 0 < report["model_offline"]["jaccard"]["mean"] <= 1
