"""``companion eval transformer``: test NLL against the Markov baseline, statistics of generated continuations."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.continuation.sampling import scale_pcs
from models.data.dataset import eval_windows, tokenize_pieces
from models.data.pieces import Piece
from models.tokenizer import Tokenizer

NoteTuple = tuple[int, int, int, int]


# --- continuation statistics (pure) --------------------------------------------------------------------


def histogram(values: Sequence[int], bins: Sequence[int]) -> np.ndarray:
    """Normalised counts of ``values`` over ``bins`` (values outside them are ignored)."""
    index = {b: i for i, b in enumerate(bins)}
    h = np.zeros(len(bins))
    for x in values:
        if x in index:
            h[index[x]] += 1
    return h / h.sum() if h.sum() else h


def tv_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two distributions (0 same, 1 disjoint)."""
    return float(0.5 * np.abs(a - b).sum())


def top_voice(notes: Sequence[NoteTuple]) -> list[int]:
    """Highest pitch at each onset, in time order."""
    top: dict[int, int] = {}
    for pitch, _, start, _ in notes:
        top[start] = max(top.get(start, -1), pitch)
    return [top[s] for s in sorted(top)]


def intervals(notes: Sequence[NoteTuple]) -> list[int]:
    """Melodic intervals of the top voice, clipped to an octave either way."""
    line = top_voice(notes)
    return [max(-12, min(12, b - a)) for a, b in zip(line, line[1:], strict=False)]


def in_key_ratio(notes: Sequence[NoteTuple], key: tuple[int, str]) -> float:
    pcs = scale_pcs(key)
    return sum(1 for n in notes if n[0] % 12 in pcs) / len(notes) if notes else 1.0


def copied_ngram_fraction(answer: Sequence[NoteTuple], prompt: Sequence[NoteTuple], n: int = 4) -> float:
    """Fraction of the answer's top-voice pitch n-grams that also occur in the prompt's."""
    a, p = top_voice(answer), top_voice(prompt)
    grams = [tuple(a[i : i + n]) for i in range(len(a) - n + 1)]
    seen = {tuple(p[i : i + n]) for i in range(len(p) - n + 1)}
    return sum(1 for g in grams if g in seen) / len(grams) if grams else 0.0


class MarkovScorer:
    """Variable-order Markov pitch model scored like ``MarkovResponder.nll`` but with count tables.

    Same idea (prefix contexts of orders 1..max_order over top-voice pitches, Witten-Bell interpolation,
    add-one unigram floor over 128 pitches), built once over a whole training corpus so scoring is fast.
    """

    def __init__(self, max_order: int = 4) -> None:
        self.max_order = max_order
        self.unigram: Counter[int] = Counter()
        self.tables: list[dict[tuple[int, ...], Counter[int]]] = [{} for _ in range(max_order + 1)]

    def learn(self, pitches: Sequence[int]) -> None:
        self.unigram.update(pitches)
        for j in range(1, len(pitches)):
            for order in range(1, min(self.max_order, j) + 1):
                self.tables[order].setdefault(tuple(pitches[j - order : j]), Counter())[pitches[j]] += 1

    def nlls(self, pitches: Sequence[int]) -> list[float]:
        """NLL (nats) of each pitch given the ones before it in the same sequence."""
        total = sum(self.unigram.values())
        out = []
        for i, pitch in enumerate(pitches):
            probability = (self.unigram[pitch] + 1) / (total + 128)
            for order in range(1, min(self.max_order, i) + 1):
                counts = self.tables[order].get(tuple(pitches[i - order : i]))
                if not counts:
                    break
                seen, distinct = sum(counts.values()), len(counts)
                probability = (counts[pitch] + distinct * probability) / (seen + distinct)
            out.append(-math.log(probability))
        return out


# --- model scoring -------------------------------------------------------------------------------------


@torch.no_grad()
def token_nlls(model: nn.Module, tokens_per_window: list[tuple[int, np.ndarray, int]], pad: int,
               batch: int = 32) -> dict[int, list[tuple[int, float]]]:
    """Per piece, (token id, NLL) of every scored body token, in order."""
    out: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for i in range(0, len(tokens_per_window), batch):
        chunk = tokens_per_window[i : i + batch]
        T = max(len(w[1]) for w in chunk) - 1
        x = torch.full((len(chunk), T), pad, dtype=torch.long)
        for b, (_, seq, _) in enumerate(chunk):
            x[b, : len(seq) - 1] = torch.from_numpy(seq[:-1])
        logp = torch.log_softmax(model(x)[0].float(), dim=-1)
        for b, (p, seq, first) in enumerate(chunk):
            targets = torch.from_numpy(seq[first:])
            nll = -logp[b, first - 1 : len(seq) - 1].gather(1, targets[:, None])[:, 0]
            out[p].extend(zip(targets.tolist(), nll.tolist(), strict=True))
    return out


def _is_mono(piece: Piece) -> bool:
    onsets = piece.notes[:, 0]
    return len(np.unique(onsets)) == len(onsets)


def nll_report(model: nn.Module, tok: Tokenizer, train: list[Piece], test: list[Piece],
               block_size: int) -> dict[str, Any]:
    """Test NLL per token; on monophonic test pieces, NLL per note and per pitch, and the Markov baseline."""
    test_set = tokenize_pieces(test, tok)
    per_piece = token_nlls(model, eval_windows(test_set, block_size), tok.vocab.pad)
    all_nll = [x for v in per_piece.values() for _, x in v]
    pitch_block = tok.vocab.block("pitch")
    by_id = {p.piece_id: p for p in test}
    markov = MarkovScorer()
    for p in train:
        markov.learn([n[2] for n in p.notes])
    t_pitch, t_note, m_pitch, notes = [], 0.0, [], 0
    for idx, scored in per_piece.items():
        piece = by_id[test_set.ids[idx]]
        if not _is_mono(piece):
            continue
        t_pitch += [x for t, x in scored if t in pitch_block]
        t_note += sum(x for _, x in scored)
        notes += sum(1 for t, _ in scored if t in pitch_block)
        m_pitch += markov.nlls([int(n[2]) for n in piece.notes])
    return {
        "test_pieces": len(test_set), "test_tokens": len(all_nll),
        "nll_per_token": float(np.mean(all_nll)) if all_nll else None,
        "mono_test_pieces": sum(1 for p in test if _is_mono(p)),
        "transformer_nll_per_pitch": float(np.mean(t_pitch)) if t_pitch else None,
        "transformer_nll_per_note_all_tokens": t_note / notes if notes else None,
        "markov_nll_per_pitch": float(np.mean(m_pitch)) if m_pitch else None,
        "markov_trained_on": f"top-voice pitches of {len(train)} training pieces (orders 1..4, Witten-Bell)",
    }


def continuation_report(live: Any, tok: Tokenizer, test: list[Piece], n_prompts: int, prompt_bars: int,
                        answer_bars: int, temperature: float, top_p: float, ppq: int = 480) -> dict[str, Any]:
    """Generate answers to the first bars of test pieces and compare them with the real next bars."""
    gen_all: list[list[NoteTuple]] = []
    real_all: list[list[NoteTuple]] = []
    rows = []
    step_ticks = ppq // tok.config.positions_per_beat
    for piece in test:
        if len(rows) >= n_prompts or piece.key is None:
            continue
        bar = tok.config.bar_positions(piece.meter)
        bar_of = piece.notes[:, 0] // bar
        if bar_of.max() < prompt_bars + answer_bars - 1:
            continue
        as_ticks = [(int(n[2]), int(n[3]), int(n[0]) * step_ticks, int(n[1]) * step_ticks) for n in piece.notes]
        prompt = [n for n, b in zip(as_ticks, bar_of, strict=True) if b < prompt_bars]
        real = [(p, v, s - prompt_bars * bar * step_ticks, d) for (p, v, s, d), b in zip(as_ticks, bar_of,
                strict=True) if prompt_bars <= b < prompt_bars + answer_bars]
        if len(prompt) < 4 or not real:
            continue
        answer = list(live.stream(prompt, ppq=ppq, length_ticks=answer_bars * bar * step_ticks,
                                  style=piece.style, key=piece.key, meter=piece.meter,
                                  answer_start_ticks=prompt_bars * bar * step_ticks, temperature=temperature,
                                  top_p=top_p, seed=len(rows)))
        rows.append({"key": piece.key, "tonal": in_key_ratio(prompt, piece.key) >= 0.9, "prompt": prompt,
                     "answer": answer, "real": real, "bar_ticks": bar * step_ticks})
        gen_all.append(answer)
        real_all.append(real)

    def pooled(fn: Any, notes_lists: list[list[NoteTuple]]) -> list[int]:
        return [x for notes in notes_lists for x in fn(notes)]

    def rel_pcs(rows_key: str) -> list[int]:
        return [(n[0] - r["key"][0]) % 12 for r in rows for n in r[rows_key]]

    durs = sorted(set(d * step_ticks for d in tok.config.durations))
    tonal = [r for r in rows if r["tonal"]]
    return {
        "prompts": len(rows), "prompt_bars": prompt_bars, "answer_bars": answer_bars,
        "temperature": temperature, "top_p": top_p,
        "pitch_class_tv_distance": tv_distance(histogram(rel_pcs("answer"), range(12)),
                                               histogram(rel_pcs("real"), range(12))),
        "interval_tv_distance": tv_distance(histogram(pooled(intervals, gen_all), range(-12, 13)),
                                            histogram(pooled(intervals, real_all), range(-12, 13))),
        "duration_tv_distance": tv_distance(histogram([n[3] for a in gen_all for n in a], durs),
                                            histogram([n[3] for a in real_all for n in a], durs)),
        "notes_per_bar_generated": sum(len(a) for a in gen_all) / max(1, len(rows) * answer_bars),
        "notes_per_bar_real": sum(len(a) for a in real_all) / max(1, len(rows) * answer_bars),
        "tonal_prompts": len(tonal),
        "in_key_generated": _mean([in_key_ratio(r["answer"], r["key"]) for r in tonal if r["answer"]]),
        "in_key_real": _mean([in_key_ratio(r["real"], r["key"]) for r in tonal]),
        "copied_4grams_generated": _mean([copied_ngram_fraction(r["answer"], r["prompt"]) for r in rows]),
        "copied_4grams_real": _mean([copied_ngram_fraction(r["real"], r["prompt"]) for r in rows]),
        "empty_answers": sum(1 for a in gen_all if not a),
    }


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def speed_report(live: Any, ppq: int = 480, repeats: int = 5) -> dict[str, float]:
    """First-note latency and generation speed against playback at 160 BPM (this machine, one thread)."""
    phrase = [(60 + (i * 7) % 12, 90, i * ppq // 4, ppq // 4) for i in range(32)]  # two bars of 16ths
    firsts, ratios = [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        it = live.stream(phrase, ppq=ppq, length_ticks=8 * 4 * ppq, style="folk", seed=r, density=16)
        first = next(it, None)
        t1 = time.perf_counter()
        rest = list(it)
        t2 = time.perf_counter()
        firsts.append((t1 - t0) * 1e3)
        if first is not None and rest:
            played_s = (rest[-1][2] - first[2]) / ppq * 60 / 160
            ratios.append(played_s / max(1e-9, t2 - t1))
    return {"first_note_ms_median": float(np.median(firsts)),
            "speed_vs_playback_160bpm_median": float(np.median(ratios)) if ratios else 0.0}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="companion eval transformer",
                                description="Evaluate the continuation Transformer; prints JSON.")
    p.add_argument("--checkpoint", type=Path, help="default: the shipped models/checkpoints/continuation.pt")
    p.add_argument("--pieces", type=Path, help="a parsed corpus .npz (else the corpus is parsed/cached)")
    p.add_argument("--cache-dir", type=Path)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data", type=Path, help="also a folder of your MIDI files")
    p.add_argument("--corpus", default="all")
    p.add_argument("--limit-per-style", type=int)
    p.add_argument("--max-test-pieces", type=int, help="score only this many test pieces")
    p.add_argument("--prompts", type=int, default=100, help="continuations to generate for the statistics")
    p.add_argument("--prompt-bars", type=int, default=4)
    p.add_argument("--answer-bars", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--speed", action="store_true", help="also time first note and generation speed")
    return p


def eval_main(argv: list[str] | None = None) -> int:
    """Print the evaluation JSON; 0 ok, 2 bad input."""
    from models.continuation.model import ContinuationModel
    from models.continuation.train import load_corpus

    args = _parser().parse_args(argv)
    args.save_pieces = None
    try:
        live = ContinuationModel.load(args.checkpoint)
        pieces, _ = load_corpus(args, live.tokenizer.config)
    except ValueError as err:
        print(f"companion eval transformer: {err}", file=sys.stderr)
        return 2
    train = [p for p in pieces if p.split == "train"]
    test = [p for p in pieces if p.split == "test"][: args.max_test_pieces]
    t0 = time.monotonic()
    result: dict[str, Any] = {"checkpoint": str(args.checkpoint or "shipped"),
                              "parameters": sum(p.numel() for p in live.model.parameters())}
    result.update(nll_report(live.model, live.tokenizer, train, test, live.model.config.block_size))
    result["continuations"] = continuation_report(live, live.tokenizer, test, args.prompts, args.prompt_bars,
                                                  args.answer_bars, args.temperature, args.top_p)
    if args.speed:
        result["speed"] = speed_report(live)
    result["eval_seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(result, indent=2))
    return 0
