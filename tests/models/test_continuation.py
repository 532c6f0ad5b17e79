"""Continuation model: streaming answers within bounds, locks, seeds, a tiny overfit, train/eval entry points."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from models.checkpoint import CheckpointFileError, load_checkpoint, save_checkpoint
from models.continuation.evaluate import (
    MarkovScorer,
    copied_ngram_fraction,
    eval_main,
    in_key_ratio,
    intervals,
    tv_distance,
)
from models.continuation.markov import MarkovResponder
from models.continuation.model import DEFAULT_CHECKPOINT, KIND, ContinuationModel, _mask_key, train_main
from models.continuation.sampling import MAX_CHORD_NOTES, pitch_mask
from models.data.dataset import WindowSampler, tokenize_pieces
from models.data.pieces import Piece
from models.tokenizer import StreamDecoder, Tokenizer
from models.transformer import GPT, GPTConfig

TOK = Tokenizer()
PPQ = 480
BAR = 4 * PPQ
PHRASE = [(60 + [0, 2, 4, 5, 7, 5, 4, 2][i % 8], 90, i * PPQ // 2, PPQ // 2) for i in range(16)]  # 2 bars


def _tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOK.vocab.size, block_size=128, n_layer=2, n_head=2, n_embd=32, dropout=0.0))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "continuation.pt"
    model = _tiny_model()
    save_checkpoint(path, model, kind=KIND, model_config=model.config.to_dict(),
                    tokenizer_config=TOK.config.to_dict(), data={"source": "test"}, metrics={})
    return path


@pytest.fixture(scope="module")
def live(checkpoint: Path) -> ContinuationModel:
    return ContinuationModel.load(checkpoint, threads=None)


def test_answers_stay_inside_the_answer_and_in_time_order(live: ContinuationModel) -> None:
    length = BAR
    for seed in range(2):
        free = list(live.stream(PHRASE, ppq=PPQ, length_ticks=length, style="folk", seed=seed))
        assert all(0 <= n[2] < length for n in free)
        notes = list(live.stream(PHRASE, ppq=PPQ, length_ticks=length, style="folk", seed=seed, first_on_start=True))
        assert notes and notes[0][2] == 0, "anchored: even an untrained model's answer starts on its beat"
        starts = [n[2] for n in notes]
        assert starts == sorted(starts)
        assert all(0 <= n[2] < length and n[2] + n[3] <= length and n[3] > 0 for n in notes)
        assert all(0 <= n[0] <= 127 and 1 <= n[1] <= 127 for n in notes)


@pytest.fixture(scope="module")
def shipped() -> ContinuationModel:
    """The shipped checkpoint (it has learned to end phrases, often early)."""
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("no shipped continuation checkpoint")
    return ContinuationModel.load(threads=None)


@pytest.fixture(scope="module", params=["live", "shipped"])
def any_model(request: pytest.FixtureRequest) -> ContinuationModel:
    """The untrained tiny model and the shipped checkpoint."""
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("bars", [2, 4])
def test_an_answer_fills_its_bars(any_model: ContinuationModel, bars: int) -> None:
    """No EOS (nor silence) before the answer's last bar: its last note ends there, none past the end."""
    length = bars * BAR
    for seed in range(6):
        for first_on_start, density in ((True, None), (False, None), (True, 2.0)):
            notes = list(any_model.stream(PHRASE, ppq=PPQ, length_ticks=length, style="folk", seed=seed,
                                          first_on_start=first_on_start, density=density))
            assert notes, (seed, first_on_start, density)
            assert length - BAR < max(n[2] + n[3] for n in notes) <= length, (seed, first_on_start, density)
            bars_sounding = {n[2] // BAR for n in notes}
            assert all(b in bars_sounding or b + 1 in bars_sounding for b in range(bars))  # no two silent bars


def test_filling_is_not_cramming(shipped: ContinuationModel) -> None:
    """A sparse density still gives a sparse answer: it rests in its bars instead of ending early."""
    for density in (1.0, 2.0, 4.0):
        counts = [len({n[2] for n in shipped.stream(PHRASE, ppq=PPQ, length_ticks=4 * BAR, seed=seed,
                                                     density=density, first_on_start=True)}) / 4
                  for seed in range(6)]
        assert density * 0.75 <= sum(counts) / len(counts) <= density * 1.5 + 0.5, (density, counts)


def test_key_lock_and_pitch_range_hold(live: ContinuationModel) -> None:
    pcs = {0, 2, 4, 5, 7, 9, 11}
    for seed in range(2):
        notes = list(live.stream(PHRASE, ppq=PPQ, length_ticks=BAR, style="folk", seed=seed, key_pcs=pcs,
                                 pitch_range=(55, 76)))
        assert all(n[0] % 12 in pcs and 55 <= n[0] <= 76 for n in notes)


def test_same_seed_same_answer(live: ContinuationModel) -> None:
    a = list(live.stream(PHRASE, ppq=PPQ, length_ticks=BAR // 2, style="folk", seed=7))
    b = list(live.stream(PHRASE, ppq=PPQ, length_ticks=BAR // 2, style="folk", seed=7))
    c = list(live.stream(PHRASE, ppq=PPQ, length_ticks=BAR // 2, style="folk", seed=8))
    assert a == b and a != c


def test_answer_can_start_mid_bar(live: ContinuationModel) -> None:
    notes = list(live.stream(PHRASE[:6], ppq=PPQ, length_ticks=BAR, style="folk", seed=2,
                             answer_start_ticks=3 * PPQ))
    assert all(0 <= n[2] < BAR for n in notes)


def test_memoized_masks_are_keyed_on_everything_they_read(live: ContinuationModel) -> None:
    """Random grammatical walks: any two states with the same memo key get the same allowed tokens."""
    gen = torch.Generator().manual_seed(3)
    locks = pitch_mask(live.tables, {0, 2, 4, 5, 7, 9, 11}, (55, 80))
    seen: dict[tuple[object, ...], list[int] | None] = {}
    compared = 0
    for walk in range(6):
        dec = StreamDecoder(TOK, "4/4")
        for t in (TOK.vocab.token("style", 0), TOK.vocab.token("meter", 0), TOK.vocab.token("key", 0)):
            dec.feed(t)
        start, end = 16 + walk, 16 * 4 - walk
        for i in range(120):
            min_pos, anchored = (walk * 3 if dec.bar == 1 else 0), walk % 2 == 0 and i < 30
            max_chord = 1 if walk % 3 == 0 else MAX_CHORD_NOTES
            found = live._allowed(dec, min_pos, anchored, locks, start, end, max_chord=max_chord)
            key = _mask_key(dec, min_pos, anchored, max_chord)
            ids = None if found is None else found.tolist()
            if ids is not None:
                assert ids == sorted(ids) and ids
            if key in seen:
                compared += 1
                assert seen[key] == ids, key
            seen[key] = ids
            if ids is None:
                break
            choices = [t for t in ids if t != TOK.vocab.eos] or ids  # walk on
            dec.feed(choices[int(torch.randint(len(choices), (1,), generator=gen))])
    assert compared > 100 and len(seen) > 50


def test_bad_arguments_fail_at_the_call(live: ContinuationModel) -> None:
    with pytest.raises(ValueError, match="unknown style"):
        live.stream(PHRASE, ppq=PPQ, length_ticks=BAR, style="bebop")
    with pytest.raises(ValueError, match="pitch_range"):
        live.stream(PHRASE, ppq=PPQ, length_ticks=BAR, pitch_range=(80, 20))


def test_unsupported_meters_fall_back(live: ContinuationModel) -> None:
    assert live.supported_meter("8/8") == "4/4" and live.supported_meter("11/8") == "4/4"
    assert live.supported_meter("6/8") == "6/8"
    with pytest.raises(ValueError, match="meter"):
        live.supported_meter("fast")


def test_generate_plays_alone(live: ContinuationModel) -> None:
    notes = list(live.generate(ppq=96, length_ticks=8 * 96, style="chorale", seed=1))
    assert all(0 <= n[2] < 8 * 96 for n in notes)


def test_missing_checkpoint_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointFileError, match="nope.pt"):
        ContinuationModel.load(tmp_path / "nope.pt")


@pytest.mark.slow
def test_tiny_model_overfits_a_tune_and_continues_it() -> None:
    line = [0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2, 0, -1]  # four bars of quarter notes, repeated
    notes = np.array([(i * 12, 12, 60 + line[i % 16], 88) for i in range(64)], dtype=np.int32)
    data = tokenize_pieces([Piece("scale", "folk", "4/4", (0, "major"), notes)], TOK)
    sampler = WindowSampler(data, TOK, block_size=96, transpose=False)
    model = _tiny_model(1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(300):
        x, y = sampler.batch(rng, 16)
        _, loss = model(torch.from_numpy(x), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    live = ContinuationModel(model, TOK)
    prompt = [(int(p), 88, int(o) * 40, int(d) * 40) for o, d, p, _ in notes[:16]]  # the first 4 bars
    answer = list(live.stream(prompt, ppq=PPQ, length_ticks=BAR, style="folk", key=(0, "major"),
                              temperature=0.0, seed=0, copy_share=1.0))  # the tune itself: no copy guard
    assert [n[0] for n in answer] == [60 + p for p in line[:4]]
    assert [n[2] for n in answer] == [0, 480, 960, 1440]


def test_markov_scorer_matches_the_responder() -> None:
    learned = [(60 + p, 90, i * 240, 240) for i, p in enumerate([0, 2, 4, 2, 0, 2, 4, 5, 7, 5, 4, 2, 0])]
    scored = [(60 + p, 90, i * 240, 240) for i, p in enumerate([0, 2, 4, 5, 4, 2, 0, 7])]
    responder = MarkovResponder(max_order=4)  # the scorer's order
    responder.learn(learned)
    scorer = MarkovScorer()
    scorer.learn([n[0] for n in learned])
    assert np.mean(scorer.nlls([n[0] for n in scored])) == pytest.approx(responder.nll(scored))


def test_continuation_statistics() -> None:
    prompt = [(p, 90, i * 240, 240) for i, p in enumerate([60, 62, 64, 65, 67])]
    assert copied_ngram_fraction(prompt, prompt) == 1.0
    assert copied_ngram_fraction([(p, 90, i, 1) for i, p in enumerate([61, 63, 66, 68, 70])], prompt) == 0.0
    assert intervals(prompt) == [2, 2, 1, 2]
    assert in_key_ratio([(61, 90, 0, 1), (60, 90, 1, 1)], (0, "major")) == 0.5
    assert tv_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 1.0


def _midi_folder(folder: Path) -> Path:
    folder.mkdir()
    for k in range(3):
        mid = mido.MidiFile(ticks_per_beat=PPQ)
        track = mido.MidiTrack()
        mid.tracks.append(track)
        for i in range(64):
            p = 60 + k + [0, 2, 4, 7][i % 4]
            track.append(mido.Message("note_on", note=p, velocity=90, time=0))
            track.append(mido.Message("note_off", note=p, velocity=0, time=PPQ // 2))
        mid.save(folder / f"tune{k}.mid")
    return folder


def test_train_and_eval_entry_points_on_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _midi_folder(tmp_path / "songs")
    out = tmp_path / "c.pt"
    code = train_main(["--data", str(data), "--corpus", "none", "--cache-dir", str(tmp_path / "cache"),
                       "--workers", "1", "--run-dir", str(tmp_path / "run"), "--out", str(out),
                       "--max-steps", "6", "--batch-size", "4", "--block-size", "64", "--n-layer", "1",
                       "--n-head", "2", "--n-embd", "32", "--eval-every", "3", "--warmup-steps", "2",
                       "--device", "cpu", "--save-pieces", str(tmp_path / "pieces.npz")])
    assert code == 0
    assert out.is_file() and (tmp_path / "run" / "loss.png").is_file()
    capsys.readouterr()
    code = eval_main(["--checkpoint", str(out), "--pieces", str(tmp_path / "pieces.npz"), "--prompts", "2"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parameters"] > 0 and "continuations" in report and "markov_nll_per_pitch" in report


def test_train_main_reports_a_bad_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train_main(["--data", str(tmp_path / "missing"), "--corpus", "none"]) == 2
    assert "missing" in capsys.readouterr().err


def test_data_alone_fine_tunes_the_shipped_model_on_the_folder_and_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _midi_folder(tmp_path / "songs")
    out = tmp_path / "mine.pt"
    code = train_main(["--data", str(data), "--cache-dir", str(tmp_path / "cache"), "--workers", "1",
                       "--run-dir", str(tmp_path / "run"), "--out", str(out), "--max-steps", "2",
                       "--batch-size", "2", "--valid-windows", "2", "--device", "cpu"])
    assert code == 0
    said = capsys.readouterr()
    plan = said.err.splitlines()[0]
    assert plan.startswith(f"fine-tuning {DEFAULT_CHECKPOINT}") and "music21's corpus is left out" in plan, plan
    assert f"reading {len(list(data.iterdir()))} files" in said.err  # the folder only, not the corpus
    assert "warning: only" in said.err and "far too little" in said.err
    assert "] step 1/2" in said.err  # progress from the first step
    assert said.out.count('"best_valid_loss"') == 1 and '"best_valid_loss"' not in said.err  # the summary once
    _, meta = load_checkpoint(out, kind=KIND)
    _, shipped = load_checkpoint(DEFAULT_CHECKPOINT, kind=KIND)
    assert meta["model_config"] == shipped["model_config"]
    assert meta["data"]["fine_tuned_from"] == str(DEFAULT_CHECKPOINT)


def test_a_played_phrase_is_answered_by_a_line_with_the_players_touch(shipped: ContinuationModel) -> None:
    """Detached eighths (200 of 240 ticks), a little loose, at any place against the clock's bars (as a player
    who is not with the click plays them): the answer is a line (never a chord), as busy as the phrase's lilt
    asks, its notes as detached as the player's. Read as they came, such lengths drew chords and near-empty bars."""
    rng = np.random.default_rng(5)
    melody = [62, 66, 69, 71, 69, 66]
    onsets_per_bar = []
    for offset in range(0, BAR, 160):
        played = [(p, 90, offset + i * 240 + int(rng.integers(-15, 16)), 200 + int(rng.integers(-25, 26)))
                  for i, p in enumerate(melody)]
        start = (offset + 6 * 240 + PPQ) // BAR * BAR + BAR
        for seed in (2, 3):
            answer = list(shipped.stream(played, ppq=PPQ, length_ticks=2 * BAR, answer_start_ticks=start,
                                         temperature=0.7, seed=seed, first_on_start=True))
            onsets = [n[2] for n in answer]
            assert len(set(onsets)) == len(onsets), f"a chord in the answer to a line: {answer}"
            lengths = [n[3] for n in answer[:-1]]
            assert lengths and np.median(lengths) < 240, f"the answer's notes are not detached: {answer}"
            onsets_per_bar.append(len(onsets) / 2)
    assert np.median(onsets_per_bar) >= 4, sorted(onsets_per_bar)
