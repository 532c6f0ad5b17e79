"""`companion eval vae`: reconstruction accuracy, KL and morph quality on held-out folk phrases, as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.vae.data import gather_windows, load_phrase_arrays, tokens_to_notes, window_starts
from models.vae.net import NOTE_OFFSET, PhraseVAENet, kl_per_phrase
from models.vae.train import DEFAULT_DATA, run_guarded

PPQ = 480
STEP_TICKS = PPQ // 4


def _pick(starts: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if len(starts) <= limit:
        return starts
    return np.sort(np.random.default_rng(seed).choice(starts, size=limit, replace=False))


@torch.inference_mode()
def reconstruction(net: PhraseVAENet, windows: np.ndarray, seed: int, batch: int = 256) -> dict[str, float]:
    """Per-16th-step accuracy teacher-forced, greedy and sampled (temperature 1), z = posterior mean; KL, NLL."""
    sums = {"teacher_forced_acc": 0.0, "greedy_acc": 0.0, "sampled_acc": 0.0, "kl_nats": 0.0,
            "recon_nll_per_step": 0.0, "exact_phrase_greedy": 0.0}
    generator = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(windows)
    for i in range(0, len(x_all), batch):
        x = x_all[i : i + batch]
        logits, mu, logvar = net(x, sample=False)
        greedy = net.generate(mu, x.shape[1])
        sampled = net.generate(mu, x.shape[1], temperature=1.0, generator=generator)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x, reduction="none").mean(dim=1)
        sums["teacher_forced_acc"] += float((logits.argmax(-1) == x).float().mean(dim=1).sum())
        sums["greedy_acc"] += float((greedy == x).float().mean(dim=1).sum())
        sums["sampled_acc"] += float((sampled == x).float().mean(dim=1).sum())
        sums["exact_phrase_greedy"] += float((greedy == x).all(dim=1).float().sum())
        sums["kl_nats"] += float(kl_per_phrase(mu, logvar).sum())
        sums["recon_nll_per_step"] += float(nll.sum())
    out = {k: round(v / len(x_all), 4) for k, v in sums.items()}
    out["phrases"] = len(x_all)
    return out


def _as_ticks(tokens: np.ndarray) -> list[tuple[int, int, int, int]]:
    return [(p, 90, o * STEP_TICKS, d * STEP_TICKS) for p, o, d in tokens_to_notes(tokens)]


def _grid(notes: list[tuple[int, int, int, int]], n_steps: int) -> np.ndarray:
    """Notes -> (n_steps,) tokens, for comparing morph neighbours step by step."""
    from models.vae.data import notes_to_tokens, ticks_to_step_notes

    return notes_to_tokens(ticks_to_step_notes(notes, PPQ, n_steps), n_steps)


def morph_quality(model: Any, pairs: list[tuple[np.ndarray, np.ndarray]], steps: int, lock: bool) -> dict[str, float]:
    """Neighbour similarity along morphs, in-key share and density-between-the-ends share of the steps."""
    from models.vae.phrase import key_pitch_classes

    neighbour, ends, in_key, in_range, endpoints = [], [], [], [], []
    for a, b in pairs:
        na, nb = _as_ticks(a), _as_ticks(b)
        n_steps = len(a)
        phrases = model.morph(na, nb, PPQ, n_steps // 16, steps, key_lock=lock, density_lock=lock)
        grids = [_grid(p, n_steps) for p in phrases]
        neighbour.extend(float((g1 == g2).mean()) for g1, g2 in zip(grids, grids[1:], strict=False))
        ends.append(float((grids[0] == grids[-1]).mean()))
        endpoints.append(float(((grids[0] == a).mean() + (grids[-1] == b).mean()) / 2))
        pcs = key_pitch_classes([*na, *nb]) or set(range(12))
        lo, hi = sorted((len(na), len(nb)))
        for p in phrases:
            in_key.append(all(n[0] % 12 in pcs for n in p))
            in_range.append(lo <= len(p) <= hi)
    return {"neighbour_similarity": round(float(np.mean(neighbour)), 4),
            "end_to_end_similarity": round(float(np.mean(ends)), 4),
            "endpoint_reconstruction_acc": round(float(np.mean(endpoints)), 4),
            "steps_in_key": round(float(np.mean(in_key)), 4),
            "steps_density_between_ends": round(float(np.mean(in_range)), 4),
            "pairs": len(pairs), "steps": steps}


def evaluate(model: Any, arrays: dict[str, np.ndarray], split: str, limit: int, pairs: int, steps: int,
             seed: int) -> dict[str, Any]:
    net: PhraseVAENet = model.net
    tokens = arrays["tokens"]
    result: dict[str, Any] = {"split": split}
    sets = {"2bar_4_4": (32, 16), "4bar_4_4": (64, 16), "2bar_3_4": (24, 12), "2bar_6_8": (24, 12)}
    for name, (length, bar) in sets.items():
        if name == "2bar_6_8":
            continue  # 3/4 and 6/8 share a 12-16th bar in the arrays; reported together as 2bar_3_4
        starts = _pick(window_starts(arrays, split, length, bar_steps=bar), limit if length == 32 else limit // 2,
                       seed)
        if len(starts):
            result[name] = reconstruction(net, gather_windows(tokens, starts, length), seed)
    # morph pairs: two 2-bar phrases of one tune, two bars apart (as a player's last two phrases are)
    starts = window_starts(arrays, split, 64, bar_steps=16)
    starts = _pick(starts, pairs, seed + 1)
    chosen = [(tokens[s : s + 32].astype(np.int64), tokens[s + 32 : s + 64].astype(np.int64)) for s in starts]
    chosen = [(a, b) for a, b in chosen if (a >= NOTE_OFFSET).sum() >= 2 and (b >= NOTE_OFFSET).sum() >= 2]
    if chosen:
        result["morph"] = morph_quality(model, chosen, steps, lock=True)
        result["morph_unlocked"] = morph_quality(model, chosen, steps, lock=False)
    return result


def eval_main(argv: list[str] | None = None) -> int:
    """Print the JSON metrics of a checkpoint on the held-out phrases."""
    from models.vae.phrase import DEFAULT_CHECKPOINT

    p = argparse.ArgumentParser(prog="companion eval vae", description=__doc__)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="phrase arrays (companion train vae --prepare)")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--limit", type=int, default=1000, help="2-bar phrases scored (half as many of the others)")
    p.add_argument("--pairs", type=int, default=100, help="morphs scored")
    p.add_argument("--steps", type=int, default=6, help="steps per morph")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    return run_guarded("companion eval vae", lambda: _eval(args))


def _eval(args: argparse.Namespace) -> int:
    from models.vae.phrase import PhraseVAE

    arrays = load_phrase_arrays(args.data)
    model = PhraseVAE.load(args.checkpoint)
    torch.set_num_threads(1)  # many tiny step-by-step ops: one thread is fastest on a small CPU
    result = evaluate(model, arrays, args.split, args.limit, args.pairs, args.steps, args.seed)
    result["checkpoint"] = str(args.checkpoint)
    result["trained"] = {k: model.meta.get("metrics", {}).get(k) for k in ("step", "valid_loss", "greedy_acc")}
    print(json.dumps(result, indent=2))
    return 0
