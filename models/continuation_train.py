"""``companion train transformer``: corpus -> token windows -> the shared trainer -> a continuation checkpoint."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.checkpoint import save_checkpoint
from models.data.cache import build_pieces, corpus_sources, midi_sources
from models.data.dataset import TokenSet, WindowSampler, eval_windows, tokenize_pieces
from models.data.pieces import SPLIT_PERCENT, Piece, load_pieces, save_pieces
from models.tokenizer import Tokenizer, TokenizerConfig
from models.trainer import TrainConfig, train
from models.transformer import GPT, GPTConfig

KIND = "continuation"


def default_cache_dir() -> Path:
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("companion")) / "continuation"
    except ImportError:
        return Path.home() / ".cache" / "companion" / "continuation"


def window_batch(windows: list[tuple[int, np.ndarray, int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval windows -> (x, y) with y = -1 wherever a token is context only or padding."""
    T = max(len(w[1]) for w in windows) - 1
    x = torch.full((len(windows), T), pad, dtype=torch.long)
    y = torch.full((len(windows), T), -1, dtype=torch.long)
    for b, (_, seq, first) in enumerate(windows):
        s = torch.from_numpy(seq)
        n = len(seq) - 1
        x[b, :n] = s[:-1]
        y[b, first - 1 : n] = s[first:]
    return x, y


def mean_nll(model: nn.Module, windows: list[tuple[int, np.ndarray, int]], pad: int, device: torch.device,
             batch: int = 64) -> tuple[float, int]:
    """Mean NLL per scored token over eval windows, and the number of tokens scored."""
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        x, y = window_batch(windows[i : i + batch], pad)
        x, y = x.to(device), y.to(device)
        logits, _ = model(x)
        nll = nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                                          ignore_index=-1, reduction="sum")
        total += float(nll)
        count += int((y >= 0).sum())
    return total / max(1, count), count


class ContinuationTask:
    """The TrainTask for the shared trainer: random transposed windows in, NLL per token out."""

    def __init__(self, train_set: TokenSet, valid_set: TokenSet, tokenizer: Tokenizer, gpt: GPTConfig,
                 data_desc: dict[str, Any], valid_windows: int) -> None:
        self.tok = tokenizer
        self.gpt = gpt
        self.sampler = WindowSampler(train_set, tokenizer, gpt.block_size, transpose=True)
        self.valid = eval_windows(valid_set, gpt.block_size)[:valid_windows]
        self.data_desc = data_desc

    def build_model(self) -> nn.Module:
        return GPT(self.gpt)

    def train_batch(self, step: int, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        x, y = self.sampler.batch(np.random.default_rng(seed), batch_size)
        return torch.from_numpy(x), torch.from_numpy(y)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        _, loss = model(batch[0], batch[1])
        return loss

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        nll, _ = mean_nll(model, self.valid, self.tok.vocab.pad, device)
        return {"valid_loss": nll}

    def save_best(self, path: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        save_checkpoint(path, model, kind=KIND, model_config=self.gpt.to_dict(),
                        tokenizer_config=self.tok.config.to_dict(), data=self.data_desc, metrics=metrics)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="companion train transformer",
                                description="Train the continuation Transformer on music21's corpus "
                                            "and/or a folder of your MIDI files.")
    p.add_argument("--data", type=Path, help="a folder of MIDI files to learn from (style 'user')")
    p.add_argument("--corpus", default="all",
                   help="music21 corpus styles to use: all, none, or a comma list (folk,chorale,...)")
    p.add_argument("--pieces", type=Path, help="a parsed corpus (.npz from --save-pieces): skip parsing")
    p.add_argument("--save-pieces", type=Path, help="write the parsed corpus to this .npz")
    p.add_argument("--cache-dir", type=Path, default=None, help="parse cache (default: the user cache folder)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parsing processes")
    p.add_argument("--limit-per-style", type=int, help="read only this many corpus files per style (smoke)")
    p.add_argument("--parse-only", action="store_true", help="parse (and --save-pieces), then stop")
    p.add_argument("--run-dir", type=Path, default=Path("runs/continuation"),
                   help="last.pt (resume), train_log.jsonl, loss.png")
    p.add_argument("--out", type=Path, help="the finished checkpoint (default RUN_DIR/continuation.pt)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--max-steps", type=int, default=4000)
    p.add_argument("--time-budget-s", type=float, help="lower max-steps to fit this many seconds")
    p.add_argument("--total-budget-s", type=float,
                   help="like --time-budget-s, but counted from the start of the command (parsing included)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--valid-windows", type=int, default=512, help="validation windows per evaluation")
    p.add_argument("--seed", type=int, default=0)
    return p


def load_corpus(args: argparse.Namespace, config: TokenizerConfig) -> tuple[list[Piece], dict[str, Any]]:
    """The pieces to train on (parsed, cached or loaded) and a description for the model card."""
    if args.pieces is not None:
        if not args.pieces.is_file():
            raise ValueError(f"{args.pieces}: no such file; give the .npz written by --save-pieces")
        pieces = load_pieces(args.pieces)
        return pieces, {"source": f"parsed corpus {args.pieces.name}", "failures": "see its parse log"}
    sources = []
    if args.corpus != "none":
        styles = None if args.corpus == "all" else tuple(s.strip() for s in args.corpus.split(","))
        unknown = set(styles or ()) - set(config.styles)
        if unknown:
            raise ValueError(f"--corpus: unknown style(s) {', '.join(sorted(unknown))}; "
                             f"choose from {', '.join(config.styles)}")
        sources += corpus_sources(styles, args.limit_per_style)
    if args.data is not None:
        sources += midi_sources(args.data)
    if not sources:
        raise ValueError("nothing to learn from: give --data DIR or leave --corpus on")
    cache = args.cache_dir or default_cache_dir()
    print(f"reading {len(sources)} files (cache {cache}, {args.workers} workers)", file=sys.stderr)
    report = build_pieces(sources, cache, config, workers=args.workers)
    summary = report.summary()
    print(f"parsed: {json.dumps(summary)}; failures listed in {cache / 'failures.log'}", file=sys.stderr)
    if args.save_pieces is not None:
        save_pieces(args.save_pieces, report.pieces)
        shutil.copyfile(cache / "failures.log", args.save_pieces.with_suffix(".failures.log"))
    return report.pieces, {"source": "music21 corpus" + (" + user MIDI" if args.data else ""), **summary}


def train_main(argv: list[str] | None = None) -> int:
    """Parse the corpus, train, write the checkpoint; 0 ok, 2 bad input (message on stderr)."""
    started = time.monotonic()
    args = _parser().parse_args(argv)
    tokenizer = Tokenizer()
    try:
        pieces, desc = load_corpus(args, tokenizer.config)
    except ValueError as err:
        print(f"companion train transformer: {err}", file=sys.stderr)
        return 2
    if args.parse_only:
        return 0
    by_split: dict[str, list[Piece]] = {"train": [], "valid": [], "test": []}
    for p in pieces:
        by_split[p.split].append(p)
    t0 = time.monotonic()
    train_set = tokenize_pieces(by_split["train"], tokenizer)
    valid_set = tokenize_pieces(by_split["valid"] or by_split["train"][:8], tokenizer)
    print(f"tokenized in {time.monotonic() - t0:.0f}s: train {len(train_set)} pieces "
          f"{len(train_set.tokens)} tokens, valid {len(valid_set)} pieces {len(valid_set.tokens)} tokens",
          file=sys.stderr)
    if len(train_set) == 0:
        print("companion train transformer: no training pieces with notes", file=sys.stderr)
        return 2
    desc = {**desc, "split": f"sha1(piece id) % 100: <{SPLIT_PERCENT[0]} train, "
                             f"<{SPLIT_PERCENT[0] + SPLIT_PERCENT[1]} valid, else test",
            "train_pieces": len(train_set), "train_tokens": int(len(train_set.tokens)),
            "valid_pieces": len(valid_set), "augmentation": "random transposition -6..+5 semitones"}
    gpt = GPTConfig(vocab_size=tokenizer.vocab.size, block_size=args.block_size, n_layer=args.n_layer,
                    n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout)
    task = ContinuationTask(train_set, valid_set, tokenizer, gpt, desc, args.valid_windows)
    budget = args.time_budget_s
    if args.total_budget_s is not None:
        left = args.total_budget_s - (time.monotonic() - started)
        budget = min(budget or left, left)
        print(f"{left:.0f}s of the total budget left for training", file=sys.stderr)
    cfg = TrainConfig(out_dir=str(args.run_dir), max_steps=args.max_steps, batch_size=args.batch_size,
                      lr=args.lr, min_lr=args.lr / 10, warmup_steps=args.warmup_steps,
                      eval_every=args.eval_every, seed=args.seed, device=args.device, resume=args.resume,
                      time_budget_s=budget)
    result = train(task, cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    best = args.run_dir / "best.pt"
    out = args.out or args.run_dir / "continuation.pt"
    if best.is_file():
        from models.checkpoint import load_checkpoint

        state, meta = load_checkpoint(best, kind=KIND)
        meta["metrics"] = {**meta["metrics"], **{k: result[k] for k in
                                                  ("train_time_s", "steps", "device", "parameters")}}
        save_checkpoint(out, state, kind=KIND, model_config=meta["model_config"],
                        tokenizer_config=meta["tokenizer_config"], data=meta["data"], metrics=meta["metrics"],
                        extra={"argv": list(argv) if argv is not None else sys.argv[1:]})
        print(f"checkpoint written to {out} ({out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    print(json.dumps(result))
    return 0
