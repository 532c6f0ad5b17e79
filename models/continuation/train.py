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

from models.checkpoint import load_into, save_checkpoint
from models.data.cache import build_pieces, corpus_sources, midi_sources
from models.data.dataset import TokenSet, WindowSampler, eval_windows, tokenize_pieces
from models.data.holdout import corpus_titles, split_held_out
from models.data.pieces import SPLIT_PERCENT, Piece, load_pieces, save_pieces
from models.tokenizer import Tokenizer, TokenizerConfig
from models.trainer import TrainConfig, train
from models.transformer import GPT, GPTConfig

KIND = "continuation"
# Defaults of the two kinds of run: from scratch on a corpus, or fine-tuning the shipped model on a folder.
SCRATCH = {"max_steps": 4000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 200, "eval_every": 250}
FINE_TUNE = {"max_steps": 200, "batch_size": 8, "lr": 3e-4, "warmup_steps": 20, "eval_every": 50}
FEW_PIECES, FEW_TOKENS = 50, 20_000  # below either, a folder is far too small to learn a style from


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
                 data_desc: dict[str, Any], valid_windows: int,
                 init: tuple[dict[str, torch.Tensor], Path] | None = None) -> None:
        self.init = init  # (weights, their file) to start from when fine-tuning; None: a fresh model
        self.tok = tokenizer
        self.gpt = gpt
        self.sampler = WindowSampler(train_set, tokenizer, gpt.block_size, transpose=True)
        self.valid = eval_windows(valid_set, gpt.block_size)[:valid_windows]
        self.data_desc = data_desc

    def build_model(self) -> nn.Module:
        model = GPT(self.gpt)
        if self.init is not None:
            load_into(model, *self.init)
        return model

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
    p.add_argument("--data", type=Path, help="a folder of MIDI files to learn from (style 'user'); alone, it "
                                             "fine-tunes the shipped model on them (a few hundred steps)")
    p.add_argument("--corpus", default=None,
                   help="music21 corpus styles to use: all, none, or a comma list (folk,chorale,...); default: "
                        "none with --data, else all (about 15,000 pieces to parse: long on a CPU)")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT|none",
                   help="start from these weights (default with --data alone: the shipped model; none: from "
                        "scratch); the model's size comes from the checkpoint")
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
    p.add_argument("--max-steps", type=int, help=f"default {SCRATCH['max_steps']}; fine-tuning "
                                                   f"{FINE_TUNE['max_steps']}")
    p.add_argument("--time-budget-s", type=float, help="lower max-steps to fit this many seconds")
    p.add_argument("--total-budget-s", type=float,
                   help="like --time-budget-s, but counted from the start of the command (parsing included)")
    p.add_argument("--batch-size", type=int, help=f"the global batch; default {SCRATCH['batch_size']}, "
                                                  f"fine-tuning {FINE_TUNE['batch_size']}")
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, help=f"peak learning rate; default {SCRATCH['lr']:g}, fine-tuning "
                                            f"{FINE_TUNE['lr']:g}")
    p.add_argument("--min-lr", type=float, help="the learning rate at the end of the cosine decay (default lr/10)")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, help=f"default {SCRATCH['warmup_steps']}; fine-tuning "
                                                    f"{FINE_TUNE['warmup_steps']}")
    p.add_argument("--eval-every", type=int, help=f"default {SCRATCH['eval_every']}; fine-tuning "
                                                  f"{FINE_TUNE['eval_every']}")
    p.add_argument("--log-every", type=int, default=50, help="steps per line of train_log.jsonl")
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
    titles = corpus_titles(p.piece_id for p in report.pieces)
    for p in report.pieces:
        p.title = titles.get(p.piece_id, p.title)
    summary = report.summary()
    print(f"parsed: {json.dumps(summary)}; failures listed in {cache / 'failures.log'}", file=sys.stderr)
    if args.save_pieces is not None:
        save_pieces(args.save_pieces, report.pieces)
        shutil.copyfile(cache / "failures.log", args.save_pieces.with_suffix(".failures.log"))
    return report.pieces, {"source": "music21 corpus" + (" + user MIDI" if args.data else ""), **summary}


def resolve_plan(args: argparse.Namespace, shipped: Path | None) -> str:
    """Fill in the defaults that depend on the kind of run, and say in one line what the run will do.

    `--data DIR` alone fine-tunes the shipped model (`shipped`) on the folder (a few hundred steps); a corpus
    (the default without --data) trains a new model from scratch."""
    fine_tune_default = args.data is not None and args.corpus is None and args.pieces is None
    args.corpus = args.corpus or ("none" if args.data is not None else "all")
    if args.init_from is None and fine_tune_default and shipped is not None:
        args.init_from = str(shipped)
    if args.init_from == "none":
        args.init_from = None
    for key, value in (FINE_TUNE if args.init_from else SCRATCH).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    what = (f"fine-tuning {args.init_from}" if args.init_from else "training a new model from scratch")
    data = " + ".join(([f"music21's corpus ({args.corpus})"] if args.corpus != "none" else [])
                      + ([f"the MIDI files in {args.data}"] if args.data is not None else [])
                      + ([f"the parsed corpus {args.pieces}"] if args.pieces is not None else []))
    note = ("; music21's corpus is left out (--corpus all adds it: about 15,000 pieces, hours of parsing and "
            "training on a CPU)" if args.corpus == "none" and args.init_from else "")
    if args.corpus == "all":
        note = "; a first run parses about 15,000 corpus pieces (long on a CPU; cached for the next run)"
    return f"{what} on {data}: {args.max_steps} steps of {args.batch_size} windows{note}"


def _too_small(train_set: TokenSet, data: Path | None) -> str | None:
    pieces, tokens = len(train_set), int(len(train_set.tokens))
    if pieces >= FEW_PIECES and tokens >= FEW_TOKENS:
        return None
    return (f"warning: only {pieces} pieces ({tokens} tokens) to train on{f' from {data}' if data else ''}: far "
            f"too little to learn a style (a few hundred pieces is a useful start); the model will mostly "
            "repeat these pieces")


def train_main(argv: list[str] | None = None, shipped: Path | None = None) -> int:
    """Parse the corpus, train, write the checkpoint; 0 ok, 2 bad input (message on stderr). `shipped`: the
    checkpoint `--data` alone fine-tunes (models.continuation.model passes the shipped one)."""
    started = time.monotonic()
    args = _parser().parse_args(argv)
    print(resolve_plan(args, shipped), file=sys.stderr, flush=True)
    init_state, init_meta = None, None
    if args.init_from:
        from models.checkpoint import CheckpointFileError, load_checkpoint

        try:
            init_state, init_meta = load_checkpoint(Path(args.init_from), kind=KIND)
        except CheckpointFileError as err:
            print(f"companion train transformer: --init-from: {err}", file=sys.stderr)
            return 2
    tokenizer = Tokenizer(TokenizerConfig.from_dict(init_meta["tokenizer_config"])) if init_meta else Tokenizer()
    try:
        pieces, desc = load_corpus(args, tokenizer.config)
    except ValueError as err:
        print(f"companion train transformer: {err}", file=sys.stderr)
        return 2
    if args.parse_only:
        return 0
    held = split_held_out(pieces, {p.piece_id: p.title for p in pieces})
    print(f"held out of training entirely: {json.dumps(held.summary())}", file=sys.stderr)
    by_split: dict[str, list[Piece]] = {"train": [], "valid": [], "test": []}
    for p in held.kept:
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
    warning = _too_small(train_set, args.data)
    if warning:
        print(warning, file=sys.stderr)
    desc = {**desc, "split": f"sha1(piece id) % 100: <{SPLIT_PERCENT[0]} train, "
                             f"<{SPLIT_PERCENT[0] + SPLIT_PERCENT[1]} valid, else test",
            "train_pieces": len(train_set), "train_tokens": int(len(train_set.tokens)),
            "valid_pieces": len(valid_set), "augmentation": "random transposition -6..+5 semitones",
            "held_out": held.summary(),
            **({"fine_tuned_from": args.init_from} if args.init_from else {})}
    if init_meta:
        gpt = GPTConfig.from_dict({**init_meta["model_config"], "dropout": args.dropout})
    else:
        gpt = GPTConfig(vocab_size=tokenizer.vocab.size, block_size=args.block_size, n_layer=args.n_layer,
                        n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout)
    init = (init_state, Path(args.init_from)) if init_state is not None else None
    task = ContinuationTask(train_set, valid_set, tokenizer, gpt, desc, args.valid_windows, init)
    budget = args.time_budget_s
    if args.total_budget_s is not None:
        left = args.total_budget_s - (time.monotonic() - started)
        budget = min(budget or left, left)
        print(f"{left:.0f}s of the total budget left for training", file=sys.stderr)
    cfg = TrainConfig(out_dir=str(args.run_dir), max_steps=args.max_steps, batch_size=args.batch_size,
                      lr=args.lr, min_lr=args.min_lr if args.min_lr is not None else args.lr / 10,
                      warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, log_every=args.log_every,
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
