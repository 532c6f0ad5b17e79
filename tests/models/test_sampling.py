"""Sampling: grammar mask, key lock, pitch range, onset limit, fill rules, density bias, temperature / top-p."""

from __future__ import annotations

import numpy as np
import torch

from models.continuation.sampling import (
    MaskTables,
    apply_mask,
    density_bias,
    density_error_bias,
    fill_mask,
    fill_rules,
    grammar_mask,
    onset_limit_mask,
    pitch_mask,
    sample,
    sample_allowed,
    scale_pcs,
)
from models.tokenizer import StreamDecoder, Tokenizer

TOK = Tokenizer()
V = TOK.vocab
TABLES = MaskTables(V)


def _ids(mask: torch.Tensor) -> list[int]:
    return torch.nonzero(mask).flatten().tolist()


def _kinds(mask: torch.Tensor) -> set[str]:
    return {V.kind(t) for t in _ids(mask)}


def _after(tokens: list[int]) -> StreamDecoder:
    dec = StreamDecoder(TOK)
    for t in tokens:
        dec.feed(t)
    assert dec.skipped == 0
    return dec


HEADER = TOK.header("folk", "3/4", (0, "major"))


def test_grammar_walks_header_then_bars() -> None:
    dec = StreamDecoder(TOK)
    assert _kinds(grammar_mask(TABLES, dec)) == {"style"}
    assert _kinds(grammar_mask(TABLES, _after(HEADER[:2]))) == {"key"}
    assert _kinds(grammar_mask(TABLES, _after(HEADER))) == {"bar"}
    assert _kinds(grammar_mask(TABLES, _after(HEADER + [V.bar]))) == {"pos", "bar", "eos"}


def test_positions_move_forward_inside_the_bar() -> None:
    dec = _after(HEADER + [V.bar, V.token("pos", 10), V.token("vel", 5), V.token("pitch", 60), V.token("dur", 2)])
    mask = grammar_mask(TABLES, dec)
    allowed_pos = [t - V.block("pos").start for t in _ids(mask) if V.kind(t) == "pos"]
    assert allowed_pos == list(range(11, 36))  # 3/4 has 36 steps
    allowed_pitch = [t - V.block("pitch").start for t in _ids(mask) if V.kind(t) == "pitch"]
    assert allowed_pitch == list(range(61, 128))  # chord tones rise
    dec2 = _after(HEADER + [V.bar])
    first = [t - V.block("pos").start for t in _ids(grammar_mask(TABLES, dec2, min_pos=24))
             if V.kind(t) == "pos"]
    assert first[0] == 24


def test_first_note_of_a_bar_needs_a_velocity() -> None:
    assert _kinds(grammar_mask(TABLES, _after(HEADER + [V.bar, V.token("pos", 0)]))) == {"vel"}


def test_random_walks_under_the_grammar_always_decode() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        dec = _after(HEADER)
        onsets = []
        for _ in range(200):
            mask = grammar_mask(TABLES, dec)
            if not mask.any():
                break
            t = sample(apply_mask(torch.randn(V.size, generator=gen), mask), 1.0, 1.0, gen)
            note = dec.feed(t)
            if note is not None:
                onsets.append(note.onset)
        assert dec.skipped == 0
        assert onsets == sorted(onsets)


def test_key_lock_and_pitch_range() -> None:
    mask = pitch_mask(TABLES, scale_pcs((7, "major")), (55, 79))
    pitches = [t - V.block("pitch").start for t in _ids(mask) if V.kind(t) == "pitch"]
    assert pitches and all(55 <= p <= 79 and p % 12 in {7, 9, 11, 0, 2, 4, 6} for p in pitches)
    assert bool(mask[V.bar]) and bool(mask[V.token("pos", 3)])  # only pitches are touched


def test_onset_limit_masks_positions_at_or_after_the_end() -> None:
    dec = _after(HEADER + [V.bar, V.bar])  # bar 1 of 3/4 starts at step 36
    mask = onset_limit_mask(TABLES, dec, end_step=36 + 12)
    pos = [t - V.block("pos").start for t in _ids(mask) if V.kind(t) == "pos"]
    assert pos == list(range(12))


def test_fill_rules_keep_an_answer_going_to_its_last_bar() -> None:
    # an answer in bars 2..5 (last bar 5); (no EOS, no BAR) by where the decoder is and its latest note's bar
    assert fill_rules(bar=2, answer_bar=2, last_bar=5, last_note_bar=1) == (True, False)  # may open with a rest
    assert fill_rules(bar=3, answer_bar=2, last_bar=5, last_note_bar=2) == (True, False)
    assert fill_rules(bar=4, answer_bar=2, last_bar=5, last_note_bar=2) == (True, True)  # not two silent bars
    assert fill_rules(bar=5, answer_bar=2, last_bar=5, last_note_bar=4) == (True, True)  # the last bar must sound
    assert fill_rules(bar=5, answer_bar=2, last_bar=5, last_note_bar=5) == (False, False)  # now it may end
    assert fill_rules(bar=2, answer_bar=2, last_bar=2, last_note_bar=1) == (True, True)  # a one-bar answer
    mask = fill_mask(TABLES, (True, True))
    assert set(range(V.size)) - set(_ids(mask)) == {V.eos, V.bar}
    assert set(range(V.size)) - set(_ids(fill_mask(TABLES, (True, False)))) == {V.eos}


def test_density_bias_moves_onsets_against_bar_lines() -> None:
    logits = torch.zeros(V.size)
    more = density_bias(TABLES, logits, 2.0)
    assert more[V.token("pos", 5)] == 2.0 and more[V.bar] == -2.0 and more[V.token("pitch", 60)] == 0.0
    assert density_error_bias(8.0, notes_so_far=2, bars_elapsed=1.0) > 0
    assert density_error_bias(2.0, notes_so_far=9, bars_elapsed=1.0) == -6.0


def test_density_bias_is_exactly_adding_to_the_three_kinds() -> None:
    torch.manual_seed(0)
    logits = torch.randn(V.size) * 5
    logits[V.token("pitch", 3)] = -float("inf")
    pos = V.block("pos")
    for bias in (0.37, -2.9, 4.0):
        want = logits.clone()
        want[pos.start : pos.stop] += bias
        want[V.bar] -= bias
        want[V.eos] -= bias
        got = density_bias(TABLES, logits, bias)
        assert torch.equal(got, want)  # bit for bit: seeded answers do not change
        assert got is not logits and not torch.equal(got, logits)


def test_sampling_respects_temperature_top_p_and_seed() -> None:
    logits = torch.tensor([0.0, 3.0, 1.0, 2.9])
    gen = torch.Generator().manual_seed(1)
    assert sample(logits, 0.0, 1.0, gen) == 1
    assert {sample(logits, 1.0, 0.01, gen) for _ in range(20)} == {1}
    a = [sample(logits, 1.0, 1.0, torch.Generator().manual_seed(5)) for _ in range(1)]
    b = [sample(logits, 1.0, 1.0, torch.Generator().manual_seed(5)) for _ in range(1)]
    assert a == b
    masked = apply_mask(logits, torch.tensor([True, False, True, False]))
    assert {sample(masked, 1.0, 1.0, gen) for _ in range(50)} <= {0, 2}


def test_sampling_over_the_allowed_ids_keeps_the_distribution_and_seed() -> None:
    logits = torch.tensor([0.0, 3.0, 1.0, 2.9, 5.0])
    allowed = np.array([0, 2, 3])
    ids = allowed.tolist()
    assert sample_allowed(logits, allowed, 0.0, 1.0, torch.Generator()) == 3
    gen = torch.Generator().manual_seed(1)
    assert {sample_allowed(logits, allowed, 1.0, 0.01, gen) for _ in range(20)} == {3}
    draws = [sample_allowed(logits, allowed, 1.0, 1.0, gen) for _ in range(4000)]
    assert set(draws) == {0, 2, 3}
    want = torch.softmax(torch.tensor([0.0, 1.0, 2.9]), -1)
    for tok, p in zip(ids, want.tolist(), strict=True):
        assert abs(draws.count(tok) / len(draws) - p) < 0.03
    a = [sample_allowed(logits, allowed, 0.8, 0.9, torch.Generator().manual_seed(5)) for _ in range(5)]
    b = [sample_allowed(logits, allowed, 0.8, 0.9, torch.Generator().manual_seed(5)) for _ in range(5)]
    assert a == b
