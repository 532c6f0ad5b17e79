"""Evaluation of the harmonizer: test NLL per token, voice-leading report versus Bach, live-step latency."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import CheckpointFileError
from models.chorale.harmonizer import SHIPPED_CHECKPOINT, Harmonizer
from models.chorale.jsb import DEFAULT_JSB_PATH, VOICES, JsbDataError, JsbVocab, load_jsb
from models.chorale.net import ChoraleNet, choose_tokens, combine_masks, voice_leading_mask
from models.chorale.train import nll_sum

# Textbook SATB ranges (MIDI): soprano C4-G5, alto G3-D5, tenor C3-G4, bass E2-C4.
TEXTBOOK_RANGES = ((60, 79), (55, 74), (48, 67), (40, 60))


def voice_leading_report(pieces: list[np.ndarray]) -> dict[str, Any]:
    """Parallel fifths/octaves per 100 beats, voice crossings, out-of-range notes for (T, 4) pitch pieces.

    A parallel is two voices that both move, in the same direction, from a perfect fifth (or octave/unison,
    compound intervals included) to the same interval class, between consecutive 16th steps.
    A crossing is a step where a voice sounds below the voice under it (S<A, A<T, T<B).
    Out of range: sounding steps outside TEXTBOOK_RANGES.
    """
    fifths = octaves = crossings = sounding = out_of_range = 0
    steps = 0
    for piece in pieces:
        p = np.asarray(piece, dtype=np.int64)
        steps += len(p)
        on = p >= 0
        a, b = p[:-1], p[1:]
        both_on = on[:-1] & on[1:]
        moved = (a != b) & both_on  # (T-1, 4)
        direction = np.sign(b - a)
        for i in range(4):
            for j in range(i + 1, 4):
                par = moved[:, i] & moved[:, j] & (direction[:, i] == direction[:, j])
                iv_a = np.abs(a[:, i] - a[:, j]) % 12
                iv_b = np.abs(b[:, i] - b[:, j]) % 12
                fifths += int(np.sum(par & (iv_a == 7) & (iv_b == 7)))
                octaves += int(np.sum(par & (iv_a == 0) & (iv_b == 0)))
        for v in range(3):
            crossings += int(np.sum(on[:, v] & on[:, v + 1] & (p[:, v] < p[:, v + 1])))
        for v, (lo, hi) in enumerate(TEXTBOOK_RANGES):
            col = p[:, v][on[:, v]]
            sounding += col.size
            out_of_range += int(np.sum((col < lo) | (col > hi)))
    beats = steps / 4
    return {
        "beats": beats,
        "parallel_fifths_per_100_beats": round(100 * fifths / beats, 3),
        "parallel_octaves_per_100_beats": round(100 * octaves / beats, 3),
        "voice_crossings_per_100_beats": round(100 * crossings / beats, 3),
        "out_of_range_notes_pct": round(100 * out_of_range / max(1, sounding), 3),
    }


@torch.inference_mode()
def harmonize_batch(harmonizer: Harmonizer, melodies: list[np.ndarray], seed: int, *, rules: bool
                    ) -> list[np.ndarray]:
    """Sample alto/tenor/bass under each soprano line (forced), all melodies at once; returns (T, 4) pitches.

    With ``rules`` the harmonizer's voice-leading masks apply (as live); without, the raw model is sampled.
    """
    net: ChoraleNet = harmonizer.net
    vocab = harmonizer.vocab
    B, T = len(melodies), max(len(m) for m in melodies)
    soprano = np.full((B, T), -1, dtype=np.int64)
    for i, m in enumerate(melodies):
        soprano[i, : len(m)] = m
    s_tok = torch.from_numpy(vocab.encode_array(soprano))  # (B, T)
    gen = torch.Generator().manual_seed(seed)
    cache = net.new_cache(B)
    prev = torch.full((B, 4), JsbVocab.BOS, dtype=torch.long)
    out = torch.zeros(B, T, 4, dtype=torch.long)
    token_pitch = harmonizer._token_pitch
    prev_pitch = torch.full((B, 4), -1, dtype=torch.long)
    for t in range(T):
        h = net.context(prev, torch.full((B,), t % 4, dtype=torch.long), cache)  # (B, C)
        chord = [s_tok[:, t]]
        pitch = torch.full((B, 4), -1, dtype=torch.long)
        pitch[:, 0] = token_pitch[s_tok[:, t]]
        acc = net.head.embed_chosen(0, s_tok[:, t])
        for v in (1, 2, 3):
            mask = harmonizer._masks[v]
            if rules:
                vl = voice_leading_mask(token_pitch, prev_pitch, pitch, v, parallels=harmonizer.avoid_parallels,
                                        crossing=harmonizer.avoid_crossing)
                mask = combine_masks(mask, vl, token_pitch)
            tok = choose_tokens(net.head.voice_logits(h, v, acc), mask, sample=True,
                                temperature=harmonizer.temperature, generator=gen)
            chord.append(tok)
            pitch[:, v] = token_pitch[tok]
            if v < 3:
                acc = acc + net.head.embed_chosen(v, tok)
        prev = torch.stack(chord, dim=-1)
        prev_pitch = pitch
        out[:, t] = prev
    result = []
    for i, m in enumerate(melodies):
        toks = out[i, : len(m)].numpy()
        result.append(np.where(toks >= vocab.FIRST_PITCH, toks - vocab.FIRST_PITCH + vocab.pitch_lo, -1))
    return result


def measure_latency(harmonizer: Harmonizer, n_notes: int = 400, seed: int = 0) -> dict[str, float]:
    """Wall time of step() (melody note -> 3 voices) and of finish_step(), warm, in this process."""
    rng = random.Random(seed)
    lo, hi = harmonizer.soprano_range
    harmonizer.reset(seed)
    step_ns, finish_ns = [], []
    pitch = (lo + hi) // 2
    for i in range(n_notes + 50):
        pitch = min(hi, max(lo, pitch + rng.choice([-2, -1, 1, 2])))
        t0 = time.perf_counter_ns()
        harmonizer.step(pitch)
        t1 = time.perf_counter_ns()
        harmonizer.finish_step()
        t2 = time.perf_counter_ns()
        if i >= 50:  # warm-up
            step_ns.append(t1 - t0)
            finish_ns.append(t2 - t1)

    def pct(xs: list[int], q: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] / 1e6, 3)

    return {"threads": torch.get_num_threads(), "notes": n_notes,
            "step_ms_p50": pct(step_ns, 0.5), "step_ms_p99": pct(step_ns, 0.99), "step_ms_max": pct(step_ns, 1.0),
            "finish_step_ms_p50": pct(finish_ns, 0.5), "finish_step_ms_p99": pct(finish_ns, 0.99)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="companion eval harmonizer", description="Evaluate the chorale harmonizer.")
    p.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT))
    p.add_argument("--data", default=str(DEFAULT_JSB_PATH), help="Jsb16thSeparated.json")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled harmonizations")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--no-samples", action="store_true", help="skip the voice-leading report")
    p.add_argument("--latency", action="store_true", help="also time the live step on this CPU")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: leave as is)")
    return p


def eval_main(argv: list[str]) -> int:
    """Print JSON metrics; returns a process exit code (2 on a bad checkpoint or data file)."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        harmonizer = Harmonizer.load(args.checkpoint, temperature=args.temperature, int8_head=False)
        data = load_jsb(args.data)
    except (CheckpointFileError, JsbDataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    net, vocab = harmonizer.net, harmonizer.vocab
    t0 = time.monotonic()
    report: dict[str, Any] = {"checkpoint": str(Path(args.checkpoint)), "parameters": net.num_params()}
    with torch.inference_mode():
        for split in ("test", "valid"):
            total, count = nll_sum(net, data[split], vocab, torch.device("cpu"))
            report[f"{split}_nll_per_token"] = round(total / count, 4)
            report[f"{split}_tokens"] = count
    report["serialization"] = "raster S,A,T,B per 16th step, one token per voice per step (rest + pitches)"
    if not args.no_samples:
        melodies = [p[:, 0] for p in data["test"]]
        raw = harmonize_batch(harmonizer, melodies, args.seed, rules=False)
        ruled = harmonize_batch(harmonizer, melodies, args.seed, rules=True)
        for sampled in (raw, ruled):
            if not all(np.array_equal(s[:, 0], p[:, 0]) for s, p in zip(sampled, data["test"], strict=True)):
                raise AssertionError("forced soprano was not kept")  # a bug, never a user error
        report["voice_leading"] = {"model_raw": voice_leading_report(raw),
                                   "model_live_rules": voice_leading_report(ruled),
                                   "bach": voice_leading_report(data["test"]),
                                   "seed": args.seed, "temperature": args.temperature,
                                   "voices": list(VOICES),
                                   "live_rules": "no parallel fifths/octaves, no voice crossing (logit masks)"}
    if args.latency:
        live = Harmonizer.load(args.checkpoint, temperature=args.temperature)  # as the live engine loads it
        report["latency"] = {**measure_latency(live, 1000), "int8_head": live.int8_head}
    report["eval_time_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(report, indent=2))
    return 0
