"""The harmonizer: data/vocab, forced soprano, ranges, key lock, determinism, overfitting, eval report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import CheckpointFileError, save_checkpoint
from models.chorale.evaluate import eval_main, voice_leading_report
from models.chorale.harmonizer import SHIPPED_CHECKPOINT, Harmonizer
from models.chorale.jsb import JsbDataError, JsbVocab, load_jsb, raster_tokens, transpose, valid_shifts
from models.chorale.net import ChoraleConfig, ChoraleNet
from models.chorale.train import HarmonizerTask, nll_sum, pad_pieces

VOCAB = JsbVocab()
RANGES = [(60, 81), (52, 74), (46, 69), (36, 66)]


def _piece(n_steps: int, offset: int = 0) -> np.ndarray:
    """A small I-IV-V-I progression in C, a chord per beat (4 steps), held notes repeated."""
    chords = [(72, 67, 64, 48), (72, 69, 65, 53), (71, 67, 62, 55), (72, 67, 64, 48)]
    steps = [chords[(i // 4) % 4] for i in range(n_steps)]
    return np.array(steps, dtype=np.int64) + offset


def _tiny_net(seed: int = 0) -> ChoraleNet:
    torch.manual_seed(seed)
    return ChoraleNet(ChoraleConfig(vocab_size=VOCAB.size, block_size=64, n_layer=1, n_head=2, n_embd=32,
                                    dropout=0.0, head_hidden=64, head_layers=1))


def _data_file(tmp_path: Path) -> Path:
    path = tmp_path / "jsb.json"
    split = [_piece(32).tolist(), _piece(24, 2).tolist()]
    path.write_text(json.dumps({"train": split, "valid": split[:1], "test": split[1:]}))
    return path


def test_vocab_round_trip_and_raster_order() -> None:
    assert VOCAB.encode(None) == VOCAB.REST and VOCAB.decode(VOCAB.REST) is None
    assert all(VOCAB.decode(VOCAB.encode(p)) == p for p in range(VOCAB.pitch_lo, VOCAB.pitch_hi + 1))
    with pytest.raises(ValueError):
        VOCAB.encode(VOCAB.pitch_hi + 1)
    piece = np.array([[72, 67, -1, 48], [74, 67, 64, 48]])
    toks = raster_tokens(piece, VOCAB)
    assert toks.shape == (8,) and toks[2] == VOCAB.REST and VOCAB.decode(int(toks[4])) == 74


def test_transposition_stays_inside_the_vocabulary() -> None:
    piece = np.array([[VOCAB.pitch_hi - 2, -1, 50, VOCAB.pitch_lo + 1]])
    shifts = valid_shifts(piece, VOCAB, max_shift=6)
    assert shifts == [-1, 0, 1, 2]
    assert transpose(piece, 2)[0, 1] == -1


def test_load_jsb_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(JsbDataError, match="missing.json does not exist"):
        load_jsb(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": [[[1, 2, 3]]], "valid": [[[1, 2, 3, 4]]], "test": [[[1, 2, 3, 4]]]}))
    with pytest.raises(JsbDataError, match=r"bad.json: train\[0\] has shape"):
        load_jsb(bad)


def test_incremental_context_and_head_match_the_full_forward() -> None:
    net = _tiny_net().eval()
    prev, beat, tgt = pad_pieces([_piece(12)], VOCAB)
    with torch.inference_mode():
        full, _ = net(prev, beat, tgt)
        cache = net.new_cache(1)
        for t in range(12):
            h = net.context(prev[:, t], beat[:, t], cache)
            acc = torch.zeros_like(h)
            for v in range(4):
                assert torch.allclose(net.head.voice_logits(h, v, acc), full[:, t, v], atol=1e-5)
                if v < 3:
                    acc = acc + net.head.embed_chosen(v, tgt[:, t, v])


def _harmonizer(net: ChoraleNet | None = None, **kw: float) -> Harmonizer:
    return Harmonizer(net or _tiny_net(), VOCAB, RANGES, **kw)


def test_forced_soprano_is_kept_and_voices_stay_in_range() -> None:
    h = _harmonizer(temperature=1.5)
    melody = [60, 62, None, 81, 79, 70, 70, 66] * 3
    out = h.harmonize_melody(melody, seed=3)
    assert len(out) == len(melody)
    assert h.octave_shift_semitones == 0  # the melody was inside the soprano range: nothing moved
    for a, t, b in out:
        for pitch, (lo, hi) in zip((a, t, b), RANGES[1:], strict=True):
            assert pitch is None or lo <= pitch <= hi
    assert h._pending is None  # every step's chord was fed back to the model
    # the soprano the model conditions on is the melody, token for token (the context's input at step t is the
    # chord of step t-1: soprano as the token, alto/tenor/bass as extras), and the rest of the chord fed back
    # is the harmony returned
    fed = h._cache.tokens[0, 1 : len(melody) + 1].tolist()
    assert h._cache.tokens[0, 0] == VOCAB.BOS and fed == [VOCAB.encode(p) for p in melody]
    fed_voices = h._cache.extra[0, 1 : len(melody) + 1, :3].tolist()
    assert fed_voices == [[VOCAB.encode(p) for p in chord] for chord in out]


@pytest.mark.parametrize("stale", [False, True])
def test_the_soprano_of_every_chord_is_the_melody_on_the_lookup_and_the_one_soprano_path(stale: bool) -> None:
    h = _harmonizer(temperature=2.0)
    h.reset(5)
    melody = [72, 74, None, 76, 77, 79, 81, 60, 96, 48]  # the last two are folded into the range by octaves
    for i, pitch in enumerate(melody):
        if stale:  # a key lock changed since the chords were prepared: the one-soprano path
            h.set_key_lock([{0, 2, 4, 5, 7, 9, 11}, {0, 4, 7, 9, 2}][i % 2])
        h.step(pitch)
        heard = None if pitch is None else pitch + h.octave_shift_semitones
        assert h._pending is not None and h._pending[0] == VOCAB.encode(heard)  # the chord's soprano
        assert heard is None or 60 <= heard <= 81
        h.finish_step()
        assert h._cache.tokens[0, h._cache.length - 1] == VOCAB.encode(heard)  # and what the context took


def test_same_seed_same_output_and_seeds_differ() -> None:
    h = _harmonizer(temperature=2.0)
    melody = [72, 72, 74, 74, 76, 76, 74, 72] * 4
    assert h.harmonize_melody(melody, seed=7) == h.harmonize_melody(melody, seed=7)
    assert h.harmonize_melody(melody, seed=7) != h.harmonize_melody(melody, seed=8)


def test_melody_outside_the_range_is_transposed_by_octaves_and_reported() -> None:
    h = _harmonizer()
    h.reset(0)
    h.step(45)  # A2: well below the soprano range (60..81)
    assert h.octave_shift_semitones == 24 and h.shift_changed
    a, t, b = h.step(47)
    assert not h.shift_changed and h.octave_shift_semitones == 24
    # the harmony goes down with it by one octave only (the middle of the bass range, 51, stays above E1)
    assert h.max_drop_semitones == 12
    for pitch, (lo, hi) in zip((a, t, b), RANGES[1:], strict=True):
        assert pitch is None or (lo - 12 <= pitch <= hi - 12 and pitch >= 28) or lo - 12 <= pitch - 12 < 28
    a, t, b = h.step(86)  # far above: the nearest shift that fits wins (-12 brings 86 to 74)
    assert h.octave_shift_semitones == -12 and h.shift_changed
    for pitch, (lo, hi) in zip((a, t, b), RANGES[1:], strict=True):
        assert pitch is None or lo <= pitch <= hi  # the voices stay in their ranges, under the melody
    with pytest.raises(ValueError, match="0..127"):
        h.step(200)


def test_key_lock_keeps_harmony_in_the_allowed_pitch_classes() -> None:
    h = _harmonizer(temperature=3.0)
    c_major = {0, 2, 4, 5, 7, 9, 11}
    h.set_key_lock(c_major)
    for a, t, b in h.harmonize_melody([72, 74, 76, 77, 79] * 4, seed=1):
        assert all(p is None or p % 12 in c_major for p in (a, t, b))
    h.set_key_lock(None)
    assert h.key_lock is None


def test_tiny_model_overfits_a_few_bars() -> None:
    data = {"train": [_piece(32)], "valid": [_piece(32)]}
    cfg = ChoraleConfig(vocab_size=VOCAB.size, block_size=64, n_layer=1, n_head=2, n_embd=32, dropout=0.0,
                        head_hidden=64, head_layers=1)
    task = HarmonizerTask(data, cfg, VOCAB, max_shift=0, crop_steps=32, data_path="x", command="test")
    torch.manual_seed(0)
    net = task.build_model()
    opt = net.configure_optimizer(0.0, 2e-2)
    for step in range(60):
        loss = task.loss(net, task.train_batch(step, torch.Generator().manual_seed(step), 2))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    total, count = nll_sum(net, data["valid"], VOCAB, torch.device("cpu"))
    assert count == 32 * 4
    assert total / count < 0.2
    # and greedy harmonization of the soprano gives back the chords it learned
    h = Harmonizer(net, VOCAB, RANGES)
    out = h.harmonize_melody([int(s) for s in _piece(32)[:, 0]], sample=False)
    assert out[8:12] == [(67, 62, 55)] * 4


def test_voice_leading_report_counts_parallels_and_crossings() -> None:
    piece = np.array([[72, 67, 60, 48], [74, 69, 62, 50], [74, 60, 65, 50]])
    rep = voice_leading_report([piece])
    assert rep["beats"] == 0.75
    # steps 0->1: every voice moves up 2: S-A fourth (no), S-T, S-B, T-B octaves, A-T and A-B fifths
    # steps 1->2: S and B hold, A and T move apart: nothing
    assert rep["parallel_octaves_per_100_beats"] == pytest.approx(100 * 3 / 0.75, abs=1e-3)
    assert rep["parallel_fifths_per_100_beats"] == pytest.approx(100 * 2 / 0.75, abs=1e-3)
    assert rep["voice_crossings_per_100_beats"] == pytest.approx(100 * 1 / 0.75, abs=1e-3)  # alto under tenor
    assert rep["out_of_range_notes_pct"] == 0.0


def test_eval_main_prints_json_and_reports_bad_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    data = _data_file(tmp_path)
    net = _tiny_net()
    ckpt = tmp_path / "h.pt"
    save_checkpoint(ckpt, net, kind="harmonizer", model_config=net.config.to_dict(),
                    tokenizer_config={**VOCAB.to_dict(), "voice_ranges": [list(r) for r in RANGES]},
                    data={}, metrics={})
    assert eval_main(["--checkpoint", str(ckpt), "--data", str(data)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test_tokens"] == 24 * 4
    assert report["test_nll_per_token"] > 0
    assert set(report["voice_leading"]) >= {"model_raw", "model_live_rules", "bach"}
    assert eval_main(["--checkpoint", str(tmp_path / "none.pt"), "--data", str(data)]) == 2
    assert "none.pt does not exist" in capsys.readouterr().err
    with pytest.raises(CheckpointFileError):
        Harmonizer.load(tmp_path / "none.pt")


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped harmonizer checkpoint")
def test_shipped_checkpoint_loads_and_harmonizes() -> None:
    h = Harmonizer.load()
    assert h.net.num_params() < 8_000_000
    out = h.harmonize_melody([72] * 8 + [74] * 8 + [None] * 4, seed=0)
    assert len(out) == 20 and all(isinstance(v, (int, type(None))) for chord in out for v in chord)


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped harmonizer checkpoint")
def test_every_melody_note_gets_a_bass_and_a_rest_gets_none_forced() -> None:
    """The trained model rests all three voices on a few onsets (0.4 % measured); under a sounding melody note the
    bass may not rest, so every note of a player's melody gets a chord. Rests stay possible under a melody rest."""
    h = Harmonizer.load()
    melody = [67, 72, 71, 69, 67, 74, 76, 74, 72, 96, 98, 67]
    for seed in range(25):
        out = h.harmonize_melody([p if k < 3 else None for p in melody for k in range(4)], seed=seed)
        assert all(chord[2] is not None for i, chord in enumerate(out) if i % 4 < 3), seed
    h.reset(0)
    assert h.step(None) is not None  # a rest is still a valid input


def test_voice_leading_mask_forbids_parallels_and_crossings() -> None:
    from models.chorale.net import combine_masks, voice_leading_mask

    tokens = torch.arange(VOCAB.size)
    token_pitch = torch.where(tokens >= VOCAB.FIRST_PITCH, tokens - VOCAB.FIRST_PITCH + VOCAB.pitch_lo, -1)
    prev = torch.tensor([[72, 67, 60, 48]])
    chosen = torch.tensor([[74, 69, -1, -1]])  # soprano and alto both up 2 (a fourth: allowed)
    mask = voice_leading_mask(token_pitch, prev, chosen, 2, parallels=True, crossing=True)[0]
    allowed = {p: bool(mask[VOCAB.encode(p)]) for p in (60, 62, 64, 69, 70)}
    # tenor 60->62 makes octaves with the soprano and fifths with the alto; 70 crosses above the alto
    assert allowed == {60: True, 62: False, 64: True, 69: True, 70: False}
    assert bool(mask[VOCAB.REST])
    # when the rules leave no pitch at all, the base mask is kept rather than forcing a rest
    base = torch.zeros(VOCAB.size, dtype=torch.bool)
    base[VOCAB.REST] = True
    base[VOCAB.encode(62)] = True
    assert torch.equal(combine_masks(base, mask.unsqueeze(0), token_pitch)[0], base)


def test_live_rule_path_matches_the_batched_mask() -> None:
    from models.chorale.net import forbidden_pitches, voice_leading_mask

    tokens = torch.arange(VOCAB.size)
    token_pitch = torch.where(tokens >= VOCAB.FIRST_PITCH, tokens - VOCAB.FIRST_PITCH + VOCAB.pitch_lo, -1)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        prev = torch.randint(44, 80, (1, 4), generator=g)
        chosen = torch.randint(44, 80, (1, 4), generator=g)
        prev[0, int(torch.randint(0, 6, (1,), generator=g)) % 4] = -1 if _ % 5 == 0 else prev[0, 0]
        voice = 1 + _ % 3
        mask = voice_leading_mask(token_pitch, prev, chosen, voice, parallels=True, crossing=True)[0]
        expected = [p for p in range(40, 80) if not bool(mask[VOCAB.encode(p)])]
        assert forbidden_pitches(prev[0].tolist(), chosen[0].tolist(), voice, 40, 79, parallels=True,
                                 crossing=True) == expected


def test_int8_head_keeps_the_outputs_close() -> None:
    net = _tiny_net()
    h32 = _harmonizer(net, temperature=1.0)
    ref = h32.net.head.voice_logits(torch.randn(1, 32, generator=torch.Generator().manual_seed(0)), 2,
                                    torch.zeros(1, 32)).detach()
    h8 = Harmonizer(_tiny_net(), VOCAB, RANGES, int8_head=True)
    if not h8.int8_head:
        pytest.skip("this torch build has no dynamic int8 quantization")
    got = h8.net.head.voice_logits(torch.randn(1, 32, generator=torch.Generator().manual_seed(0)), 2,
                                   torch.zeros(1, 32))
    assert torch.allclose(got, ref, atol=0.05)
    assert len(h8.harmonize_melody([72, 74, 76], seed=0)) == 3
    assert Harmonizer(h8.net, VOCAB, RANGES).int8_head  # a second harmonizer on the shared network knows


def test_precomputed_chords_match_the_one_soprano_path() -> None:
    h = _harmonizer(temperature=1.0)
    h.harmonize_melody([72, 74, 76, 74, 72, 71], seed=2, sample=False)  # leaves a table built for greedy steps
    assert h._chords is not None and h._chords.table is not None and h._prev_pitches[1] >= 0
    rows, pitches = h._chords.table
    for row in h._soprano_row.values():
        chosen, want_pitches = h._sample_chord(h._new_chords(h._chords.key), row, sample=False)
        assert chosen[1:] == rows[row] and want_pitches == pitches[row]


def test_a_setting_changed_after_finish_step_reaches_the_next_step() -> None:
    h = _harmonizer(temperature=3.0)
    c_major, one_tone = {0, 2, 4, 5, 7, 9, 11}, {7}
    h.reset(4)
    for i in range(24):
        lock = c_major if i % 2 else one_tone
        h.set_key_lock(lock)  # after the previous finish_step: the prepared chords are stale
        a, t, b = h.step(72 + i % 5)
        assert all(p is None or p % 12 in lock for p in (a, t, b))
        h.finish_step()


def test_prepare_rebuilds_the_chords_for_a_new_key_lock_and_stops_when_interrupted() -> None:
    h = _harmonizer(temperature=1.0)
    h.harmonize_melody([72, 74, 76, 74], seed=2, sample=False)
    state = h._generator.get_state()
    assert h.prepare() and torch.equal(h._generator.get_state(), state)  # nothing changed: no work, no draw
    h.set_key_lock({0, 4, 7})
    assert not h.prepare(lambda: True) and not h._table_fresh(False)  # a note is waiting: left stale
    assert h.prepare()
    rows, pitches = h._chords.table  # type: ignore[union-attr]
    for row in h._soprano_row.values():  # the same chords the one-soprano path gives under the lock
        chosen, want_pitches = h._sample_chord(h._new_chords(h._chords.key), row, sample=False)  # type: ignore
        assert chosen[1:] == rows[row] and want_pitches == pitches[row]
    assert all(p is None or p % 12 in {0, 4, 7} for p in h.step(72, sample=False))


@pytest.mark.parametrize("passes", [0, 1, 2, 3, 4])
def test_a_note_during_an_interrupted_rebuild_finishes_its_own_row_from_where_it_stopped(passes: int) -> None:
    h = _harmonizer(temperature=1.0)
    h.harmonize_melody([72, 74, 76, 74], seed=2, sample=False)
    h.set_key_lock({2, 7, 11})
    asked = iter([False] * passes + [True] * 10)
    assert not h.prepare(lambda: next(asked))  # stopped after `passes` of its 5 pieces of work
    partial = h._chords
    assert partial is not None and partial.table is None and partial.voice == 1 + (passes + 1) // 2
    rows = {row: h._sample_chord(partial, row, sample=False) for row in h._soprano_row.values()}
    assert h.prepare()  # and the next prepare goes on from there
    assert h._chords is partial and partial.table is not None
    for row, (chosen, pitches) in rows.items():  # greedy: the row finished alone is the row of the whole table
        assert chosen[1:] == partial.table[0][row] and pitches == partial.table[1][row]


@pytest.mark.parametrize(("melody", "drop"), [(range(24, 32), 12), (range(36, 48), 12), (range(48, 60), 12),
                                              (range(62, 80), 0), (range(90, 100), 0)])
def test_no_harmony_voice_sounds_below_e1_and_each_stays_in_its_range_moved_by_whole_octaves(
        melody: range, drop: int) -> None:
    """A melody at C1-G1 used to take the bass to MIDI 0..14; now the voices follow it down one octave at
    most, and a note that would still sound below E1 (28) is raised an octave."""
    h = _harmonizer(temperature=2.0)
    for seed in range(3):
        h.reset(seed)
        for soprano in list(melody) * 3:
            voices = h.step(soprano)
            for pitch, heard, (lo, hi) in zip(voices, h._prev_pitches[1:], RANGES[1:], strict=True):
                if pitch is None:
                    continue
                assert lo <= heard <= hi and pitch >= 28, (soprano, pitch)
                if heard - drop >= 28:  # the voice in its range moved by whole octaves with the melody
                    assert pitch == heard - drop, (soprano, pitch, heard)
                else:  # the same pitch class in the lowest octave at or above E1
                    assert pitch % 12 == heard % 12 and pitch - 12 < 28, (soprano, pitch, heard)
            h.finish_step()


def test_redo_step_takes_the_last_chord_back_out_of_the_context_and_samples_it_again() -> None:
    """A left-hand chord just after the melody note: the step is taken again under it, as if it had come first."""
    late, first = _harmonizer(), _harmonizer()  # the same tiny network (seeded)
    triad = {0, 4, 7}
    assert late.redo_step(72) is None  # nothing to take back after a reset
    for h in (late, first):
        h.reset(0)
        for pitch in (72, 74, 76, 74):
            h.step(pitch, sample=False)
            h.finish_step()
    late.step(72, sample=False)
    late.finish_step()  # voiced and fed to the context before the chord came
    late.set_key_lock(triad)
    redone = late.redo_step(72, sample=False)
    first.set_key_lock(triad)
    assert redone == first.step(72, sample=False) and all(p is None or p % 12 in triad for p in redone)  # type: ignore
    assert late.redo_step(72, sample=False) == redone  # not finished yet: taken again the same way
    for h in (late, first):
        h.finish_step()
    assert late._cache.length == first._cache.length  # the context holds the chord once, the new one
    for pitch in (74, 76, 77):
        assert late.step(pitch, sample=False) == first.step(pitch, sample=False)
        late.finish_step()
        first.finish_step()
