"""`companion eval continuation`: held-out split, computed baselines, figures, the style mix, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from companion.cli import main as cli_main
from companion.offline.continuation_eval import LOOSE_TICKS, evaluate, played_tunes
from models.continuation.baselines import prompt_markov_answer, random_in_key_answer, repeat_answer
from models.continuation.metrics import (
    Tune,
    beat_grid,
    bootstrap_interval,
    on_grid_share,
    tune_figures,
    tune_from_piece,
)
from models.continuation.prompt_style import PromptStyle, dense, mix_block
from models.continuation.sampling import scale_pcs
from models.data.holdout import HELD_OUT_COLLECTION, abc_titles, opening_signature, split_held_out
from models.data.pieces import Piece, save_pieces
from models.tokenizer import GridNote, Tokenizer

PPQ = 480
BAR_68 = 3 * PPQ  # a 6/8 bar
JIG = [60, 62, 64, 65, 64, 62, 60, 67, 65, 64, 62, 60]  # a 6/8 line in eighths, C major


def _jig_notes(bars: int, shift: int = 0) -> list[tuple[int, int, int, int]]:
    return [(JIG[i % len(JIG)] + shift, 90, i * PPQ // 2, PPQ // 2) for i in range(bars * 6)]


def _tune(truth: list[tuple[int, int, int, int]] | None = None) -> Tune:
    prompt = tuple(_jig_notes(4))
    truth = truth if truth is not None else [(p, v, s, d) for p, v, s, d in _jig_notes(4)]
    return Tune("music21:ryansMammoth/t.abc#0", "folk", "6/8", (0, "major"), BAR_68, 4 * BAR_68, prompt,
                tuple(truth))


def _piece(pid: str, pitches: list[int], title: str = "") -> Piece:
    notes = np.array([(i * 6, 6, p, 88) for i, p in enumerate(pitches)], dtype=np.int32)
    return Piece(pid, "folk", "6/8", (0, "major"), notes, title)


# --- held out entirely --------------------------------------------------------------------------------------


def test_held_out_pieces_and_their_duplicates_never_reach_training() -> None:
    rng = np.random.default_rng(1)
    held = [int(x) for x in rng.integers(60, 72, 40)]
    pieces = [_piece(f"music21:oneills1850/o.abc#{i}", [int(x) for x in rng.integers(60, 72, 40)], f"tune {i}")
              for i in range(20)]
    pieces += [_piece(f"music21:{HELD_OUT_COLLECTION}/h{i}.abc#0", [int(x) for x in rng.integers(60, 72, 40)])
               for i in range(3)]
    pieces.append(_piece(f"music21:{HELD_OUT_COLLECTION}/haste.abc#0", held, "haste to wedding"))
    pieces.append(_piece("music21:oneills1850/o.abc#90", [p + 5 for p in held], "another name"))  # transposed
    pieces.append(_piece("music21:airdsAirs/a.abc#3", [60, 61] * 20, "haste to wedding | wedding jig"))
    division = split_held_out(pieces, {p.piece_id: p.title for p in pieces})
    kept_ids = {p.piece_id for p in division.kept}
    assert len(division.held_out) == 4 and not any(HELD_OUT_COLLECTION in pid for pid in kept_ids)
    assert {p.piece_id for p, _ in division.duplicates} == {"music21:oneills1850/o.abc#90",
                                                            "music21:airdsAirs/a.abc#3"}
    assert len(kept_ids) == 20


def test_training_split_excludes_the_held_out_collection(tmp_path: Path) -> None:
    """The real training entry point: a held-out tune and a transposed copy of it are not trained on."""
    from models.checkpoint import load_checkpoint
    from models.continuation.train import train_main

    rng = np.random.default_rng(2)
    held = [int(x) for x in rng.integers(60, 72, 30)]
    pieces = [_piece(f"music21:oneills1850/o.abc#{i}", [int(x) for x in rng.integers(60, 72, 30)]) for i in range(12)]
    pieces += [_piece(f"music21:{HELD_OUT_COLLECTION}/h.abc#0", held), _piece("music21:miscFolk/m.abc#0",
                                                                               [p - 3 for p in held])]
    save_pieces(tmp_path / "p.npz", pieces)
    assert train_main(["--pieces", str(tmp_path / "p.npz"), "--run-dir", str(tmp_path / "run"), "--max-steps", "1",
                       "--batch-size", "2", "--block-size", "32", "--n-layer", "1", "--n-head", "1", "--n-embd",
                       "16", "--device", "cpu", "--eval-every", "1"]) == 0
    _, meta = load_checkpoint(tmp_path / "run" / "continuation.pt", kind="continuation")
    held_out = meta["data"]["held_out"]
    assert held_out["held_out_pieces"] == 1 and held_out["duplicates_excluded"] == 1
    assert meta["data"]["train_pieces"] + meta["data"]["valid_pieces"] <= 12


def test_titles_and_openings() -> None:
    assert abc_titles("X:1\nT:The Rakes of Kildare -- Jig\nT: Jig\nK:G\n") == ["rakes of kildare"]
    assert opening_signature(np.array([(0, 6, 60, 88), (6, 6, 64, 88), (6, 6, 67, 88)]), count=2) == (7,)
    assert opening_signature(np.zeros((0, 4)), count=2) is None


# --- baselines are computed from the prompt --------------------------------------------------------------------


def test_repeat_baseline_repeats_the_last_bars() -> None:
    prompt = _jig_notes(4)
    answer = repeat_answer(prompt, 4 * BAR_68, 4 * BAR_68, BAR_68, bars=2)
    assert [n[0] for n in answer[:12]] == [n[0] for n in prompt[12:24]]
    assert [n[2] for n in answer[12:24]] == [n[2] + 2 * BAR_68 for n in answer[:12]]


def test_prompt_markov_uses_only_the_prompt_and_its_rhythm() -> None:
    line = [60, 62, 64, 60, 62, 67, 60, 62, 64, 65] * 2  # (60, 62) goes on to 64 or 67
    prompt = [(p, 90, i * 240, 240 if i % 2 else 480) for i, p in enumerate(line)]
    a = prompt_markov_answer(prompt, 8 * 240, 4 * BAR_68, seed=1)
    b = prompt_markov_answer(prompt, 8 * 240, 4 * BAR_68, seed=2)
    assert {n[0] for n in a} <= {n[0] for n in prompt} and a != b
    assert all(0 <= n[2] < 4 * BAR_68 for n in a) and {n[3] for n in a} <= {240, 480}
    for x, y, z in zip(a, a[1:], a[2:], strict=False):  # every order-2 step was seen in the prompt
        seen = any(prompt[i][0] == x[0] and prompt[i + 1][0] == y[0] and prompt[i + 2][0] == z[0]
                   for i in range(len(prompt) - 2))
        assert seen or not any(prompt[i][0] == x[0] and prompt[i + 1][0] == y[0] for i in range(len(prompt) - 2))


def test_random_in_key_stays_in_key_and_range() -> None:
    prompt = _jig_notes(2)
    answer = random_in_key_answer(prompt, (7, "major"), 4 * BAR_68, seed=3)
    assert answer and all(n[0] % 12 in scale_pcs((7, "major")) for n in answer)
    assert all(60 <= n[0] <= 67 for n in answer)


# --- figures ----------------------------------------------------------------------------------------------


def test_figures_follow_the_answer() -> None:
    tune = _tune()
    perfect = tune_figures(list(tune.truth), tune)
    assert perfect["pitch_class_overlap"] == pytest.approx(1.0) and perfect["duration_overlap"] == pytest.approx(1.0)
    assert perfect["copied_4grams"] == pytest.approx(1.0) and perfect["grid_kept"] == 1.0
    off = tune_figures([(61, 90, i * 160, 160) for i in range(24)], tune)  # triplet 16ths of C#: off key and grid
    assert off["pitch_class_overlap"] == 0.0 and off["in_key"] == 0.0 and off["grid_kept"] == 0.0
    assert off["duration_overlap"] == 0.0 and off["notes_per_bar"] == pytest.approx(6.0)


def test_a_played_tune_is_judged_as_played() -> None:
    """--played: the prompt detached and loose, the truth with the same touch; an answer with the player's touch
    matches that truth, lengths and grid read to the model's step."""
    tune = _tune()
    played = played_tunes([tune], 0.8, seed=1)[0]
    assert played.truth == tuple((p, v, s, round(d * 0.8)) for p, v, s, d in tune.truth)
    for (_, _, s, d), (_, _, ps, pd) in zip(sorted(tune.prompt, key=lambda n: n[2]), played.prompt, strict=True):
        assert abs(ps - s) <= LOOSE_TICKS and 0.7 * d <= pd <= 0.9 * d
    assert played.prompt != tune.prompt
    figures = tune_figures([(p, v, s, round(d * 0.8)) for p, v, s, d in tune.truth], played)
    assert figures["duration_overlap"] == pytest.approx(1.0) and figures["grid_kept"] == 1.0
    legato = tune_figures(list(tune.truth), played)  # the written lengths are not the player's
    assert legato["duration_overlap"] == 0.0


def test_grid_of_a_compound_prompt() -> None:
    assert beat_grid(_jig_notes(2), "6/8", PPQ) == (3 * PPQ // 2, frozenset({0, PPQ // 2, PPQ}))
    assert beat_grid([(60, 90, i * 160, 160) for i in range(9)], "4/4", PPQ) == (PPQ, frozenset({0, 160, 320}))
    sixteenths = [(60, 90, i * PPQ // 4, PPQ // 4) for i in range(12)]  # a jig answered in running 16ths
    assert on_grid_share(sixteenths, beat_grid(_jig_notes(2), "6/8", PPQ)) == 0.5


def test_tune_from_piece_skips_a_pickup() -> None:
    pitches = [67] + JIG * 4  # one pickup eighth, then 8 bars of 6 eighths
    notes = np.array([(30, 6, 67, 88)] + [(36 + i * 6, 6, p, 88) for i, p in enumerate(JIG * 4)], dtype=np.int32)
    piece = Piece("x", "folk", "6/8", (0, "major"), notes)
    tune = tune_from_piece(piece, 36, PPQ // 12)
    assert tune is not None and len(pitches) == 49
    assert tune.prompt[0][2] == 30 * 40 and tune.answer_start_ticks == 5 * BAR_68
    assert len(tune.prompt) == 25 and len(tune.truth) == 24 and tune.truth[0][2] == 0


def test_evaluate_computes_baselines_with_intervals() -> None:
    tunes = [_tune(), _tune([(p + 2, v, s, d) for p, v, s, d in _jig_notes(4)])]
    sources = {"repeat": lambda t, seed: repeat_answer(t.prompt, t.answer_start_ticks, 4 * t.bar_ticks,
                                                        t.bar_ticks),
               "prompt_markov": lambda t, seed: prompt_markov_answer(t.prompt, t.answer_start_ticks,
                                                                     4 * t.bar_ticks, seed)}
    result = evaluate(tunes, sources)
    repeat = result["answers"]["repeat"]
    assert repeat["tunes"] == 2 and repeat["copied_4grams"]["mean"] == pytest.approx(1.0)
    lo, hi = repeat["pitch_class_overlap"]["ci95"]
    assert lo <= repeat["pitch_class_overlap"]["mean"] <= hi and lo < 1.0
    assert "repeat" in result["gain_over_prompt_markov"]
    assert bootstrap_interval([1.0, 1.0]) == (1.0, 1.0)


def test_draws_average_answers_with_their_own_seeds() -> None:
    """Draw 0 is the single-draw answer; a tune's figures over several draws are the mean of each draw's."""
    tunes = [_tune(), _tune([(p + 2, v, s, d) for p, v, s, d in _jig_notes(4)])]
    seeds: list[int] = []

    def chain(t: Tune, seed: int) -> list[tuple[int, int, int, int]]:
        seeds.append(seed)
        return prompt_markov_answer(t.prompt, t.answer_start_ticks, 4 * t.bar_ticks, seed)

    one = evaluate(tunes, {"prompt_markov": chain}, seed=5)["answers"]["prompt_markov"]
    assert seeds == [5, 6]
    seeds.clear()
    three = evaluate(tunes, {"prompt_markov": chain}, seed=5, draws=3)["answers"]["prompt_markov"]
    assert sorted(seeds) == sorted([5, 6, 5 + 100_003, 6 + 100_003, 5 + 200_006, 6 + 200_006])
    per_draw = [[tune_figures(chain(t, 5 + i + d * 100_003), t, PPQ)["interval_overlap"] for d in range(3)]
                for i, t in enumerate(tunes)]
    assert three["interval_overlap"]["mean"] == pytest.approx(np.mean([np.mean(r) for r in per_draw]), abs=1e-4)
    assert one["interval_overlap"]["mean"] == pytest.approx(np.mean([r[0] for r in per_draw]), abs=1e-4)


# --- the player's style mixed into the model -----------------------------------------------------------------


def test_prompt_style_distributions() -> None:
    notes = [GridNote(i * 6, 6, p, 88) for i, p in enumerate(JIG * 2)]
    style = PromptStyle(36).fit(notes)
    pitches = style.pitch_probs([60, 62])
    assert sum(pitches.values()) == pytest.approx(1.0) and max(pitches, key=pitches.get) == 64
    assert max(style.pos_probs(0).items(), key=lambda kv: kv[1])[0] == 6
    assert style.dur_probs(12) == {6: pytest.approx(1.0)}


def test_mix_block_keeps_the_block_mass() -> None:
    allowed = np.array([3, 10, 11, 12])  # token 3 outside the block
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    style = dense({0: 0.0, 2: 1.0, 7: 0.5}, {0: 0, 1: 1, 2: 2}, 10)  # value 7 has no token: left out
    mixed = np.exp(mix_block(logits, allowed, range(10, 20), style, 0.5))
    assert mixed[0] == pytest.approx(0.4) and mixed[1:].sum() == pytest.approx(0.6)
    assert mixed[3] == pytest.approx(0.5 * 0.1 + 0.5 * 0.6)


def test_style_mix_pulls_the_model_towards_the_prompt() -> None:
    from models.continuation.model import ContinuationModel
    from tests.models.test_continuation import _tiny_model

    model = _tiny_model()
    live = ContinuationModel(model, Tokenizer())
    prompt = _jig_notes(4)
    plain = list(live.stream(prompt, ppq=PPQ, length_ticks=2 * BAR_68, meter="6/8", seed=0, style_mix=0.0))
    mixed = list(live.stream(prompt, ppq=PPQ, length_ticks=2 * BAR_68, meter="6/8", seed=0, style_mix=0.9))
    def melody(notes: list[tuple[int, int, int, int]]) -> list[int]:  # the lowest note at each onset: the rest
        return [min(n[0] for n in notes if n[2] == s) for s in sorted({n[2] for n in notes})]  # are chord tones

    share = [sum(1 for p in melody(a) if p in set(JIG)) / max(1, len(melody(a))) for a in (plain, mixed)]
    assert share[1] > share[0] and share[1] > 0.7  # an untrained model plays what the phrase played


# --- the command ----------------------------------------------------------------------------------------------


def test_eval_continuation_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pieces = [_piece(f"music21:{HELD_OUT_COLLECTION}/h{i}.abc#0", [60 + (i + k) % 8 for k in range(48)])
              for i in range(3)]
    save_pieces(tmp_path / "p.npz", pieces)
    out = tmp_path / "r.json"
    assert cli_main(["eval", "continuation", "--pieces", str(tmp_path / "p.npz"), "--answers",
                     "repeat,prompt_markov,random_in_key,markov_call_response", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["held_out"]["tunes_used"] == 3 and json.loads(out.read_text()) == result
    assert set(result["answers"]) == {"repeat", "prompt_markov", "random_in_key", "markov_call_response"}
    assert cli_main(["eval", "continuation", "--answers", "nonsense"]) == 2
    assert "unknown nonsense" in capsys.readouterr().err
    assert cli_main(["eval", "continuation", "--pieces", str(tmp_path / "missing.npz"), "--answers", "repeat"]) == 2
    assert "missing.npz: no such file" in capsys.readouterr().err


def test_each_held_out_tune_counts_once(tmp_path: Path) -> None:
    from companion.offline.continuation_eval import held_out_tunes

    pieces = [_piece(f"music21:{HELD_OUT_COLLECTION}/h{i}.abc#0", [60 + (i + k) % 8 for k in range(48)])
              for i in range(3)]
    save_pieces(tmp_path / "p.npz", pieces + pieces[:2])  # two handed over twice, as a cache read can
    tunes, source = held_out_tunes(tmp_path / "p.npz", 10, 1)
    assert [t.piece_id for t in tunes] == sorted(p.piece_id for p in pieces) and source["pieces"] == 3
    skipped, _ = held_out_tunes(tmp_path / "p.npz", 10, 1, skip=2)
    assert [t.piece_id for t in skipped] == [tunes[2].piece_id]
    with pytest.raises(ValueError, match="smaller --skip"):
        held_out_tunes(tmp_path / "p.npz", 10, 1, skip=3)
