"""Data: split, key estimate, ABC splitting and bar alignment, MIDI folders, cache, failure log, windows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import mido
import numpy as np
import pytest

from models.data.cache import build_pieces, midi_sources
from models.data.dataset import HEADER_TOKENS, WindowSampler, eval_windows, tokenize_pieces
from models.data.music21_corpus import split_abc
from models.data.pieces import Piece, estimate_key, load_pieces, save_pieces, split_of
from models.tokenizer import Tokenizer, TokenizerConfig

TOK = Tokenizer()

TUNES = """%abc file header
M:4/4

X:1
T:Pickup tune
M:3/4
L:1/8
K:G
D2 | G2 A2 B2 | d6 |]

X:2
T:Second
L:1/4
K:Am
A B c d | e4 |]
"""


def test_split_is_fixed_and_about_90_5_5() -> None:
    ids = [f"music21:folk/{i}.abc" for i in range(4000)]
    counts = Counter(split_of(i) for i in ids)
    assert [split_of(i) for i in ids[:50]] == [split_of(i) for i in ids[:50]]
    assert 0.87 < counts["train"] / 4000 < 0.93
    assert 0.03 < counts["test"] / 4000 < 0.07


def test_estimate_key() -> None:
    assert estimate_key([60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60]) == (0, "major")
    assert estimate_key([57, 59, 60, 62, 64, 65, 68, 69, 64, 57, 69]) == (9, "minor")
    assert estimate_key([]) is None


def test_split_abc_keeps_the_header_apart() -> None:
    header, tunes = split_abc(TUNES)
    assert "header" in header
    assert [t.splitlines()[0] for t in tunes] == ["X:1", "X:2"]


def _write_midi(path: Path, pitches: list[int], tpb: int = 480) -> None:
    mid = mido.MidiFile(ticks_per_beat=tpb)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0))
    for p in pitches:
        track.append(mido.Message("note_on", note=p, velocity=100, time=0))
        track.append(mido.Message("note_off", note=p, velocity=0, time=tpb // 2))
    mid.save(path)


def test_abc_tunes_parse_with_pickups_on_the_bar_grid(tmp_path: Path) -> None:
    src = tmp_path / "tunes.abc"
    src.write_text(TUNES)
    report = build_pieces([(src, "folk", "test:tunes.abc")], tmp_path / "cache", TOK.config, workers=1,
                          log=lambda s: None)
    assert not report.failures
    first, second = report.pieces
    assert first.piece_id == "test:tunes.abc#0" and first.meter == "3/4" and first.key == (7, "major")
    # the D pickup (a quarter) ends on the first bar line: onset 24 of a 36-step bar
    assert first.notes[:, 0].tolist() == [24, 36, 48, 60, 72]
    assert first.notes[:, 2].tolist() == [62, 67, 69, 71, 74]
    assert second.meter == "4/4" and second.key == (9, "minor")
    assert second.notes[:, 0].tolist() == [0, 12, 24, 36, 48]


def test_midi_folder_cache_and_failure_log(tmp_path: Path) -> None:
    folder = tmp_path / "songs"
    folder.mkdir()
    _write_midi(folder / "good.mid", [60, 62, 64, 65])
    (folder / "broken.mid").write_bytes(b"not a midi file at all")
    sources = midi_sources(folder)
    cache = tmp_path / "cache"
    report = build_pieces(sources, cache, TOK.config, workers=1, log=lambda s: None)
    assert [p.piece_id for p in report.pieces] == ["user:good.mid"]
    piece = report.pieces[0]
    assert piece.meter == "3/4" and piece.style == "user"
    assert piece.notes.tolist() == [[0, 6, 60, 100], [6, 6, 62, 100], [12, 6, 64, 100], [18, 6, 65, 100]]
    assert [f[0] for f in report.failures] == ["user:broken.mid"]
    log = (cache / "failures.log").read_text()
    assert "user:broken.mid" in log
    again = build_pieces(sources, cache, TOK.config, workers=1, log=lambda s: None)
    assert again.cached_files == 2 and len(again.pieces) == 1 and len(again.failures) == 1
    finer = TokenizerConfig(positions_per_beat=24)
    other = build_pieces(sources, cache, finer, workers=1, log=lambda s: None)
    assert other.cached_files == 0  # another grid is another cache entry


def test_midi_folder_without_files_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no MIDI files"):
        midi_sources(tmp_path)


def _pieces() -> list[Piece]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(6):
        n = 40
        onsets = np.arange(n) * 6
        notes = np.stack([onsets, np.full(n, 6), rng.integers(55, 80, n), np.full(n, 88)], axis=1)
        out.append(Piece(f"p{i}", "folk", "4/4", (0, "major"), notes.astype(np.int32)))
    return out


def test_pieces_save_and_load(tmp_path: Path) -> None:
    pieces = _pieces()
    save_pieces(tmp_path / "c.npz", pieces)
    back = load_pieces(tmp_path / "c.npz")
    assert [p.piece_id for p in back] == [p.piece_id for p in pieces]
    assert all((a.notes == b.notes).all() and a.key == b.key for a, b in zip(back, pieces, strict=True))


def test_windows_start_on_a_bar_and_transpose_pitches_with_the_key() -> None:
    data = tokenize_pieces(_pieces(), TOK)
    sampler = WindowSampler(data, TOK, block_size=64)
    rng = np.random.default_rng(1)
    x, y = sampler.batch(rng, 16)
    v = TOK.vocab
    assert x.shape == (16, 64)
    assert (x[:, HEADER_TOKENS] == v.bar).all()
    valid = y >= 0
    assert (x[:, 1:][valid[:, 1:]] == y[:, :-1][valid[:, 1:]]).all()
    shifts = set()
    for row in x:
        key_tonic = (row[2] - v.block("key").start) % 12
        shifts.add(int(key_tonic))
        p0, p1 = v.block("pitch").start, v.block("pitch").stop
        pitches = row[(row >= p0) & (row < p1)] - p0
        assert ((pitches >= 55 - 6) & (pitches < 80 + 6)).all()
    assert len(shifts) > 3  # the key token moved with the transposition


def test_eval_windows_score_every_body_token_once() -> None:
    data = tokenize_pieces(_pieces(), TOK)
    windows = eval_windows(data, block_size=40)
    scored = Counter()
    for p, seq, first in windows:
        assert len(seq) <= 41 and seq[HEADER_TOKENS] == TOK.vocab.bar
        scored[p] += len(seq) - first
    assert all(scored[p] == len(data.body(p)) for p in range(len(data)))
