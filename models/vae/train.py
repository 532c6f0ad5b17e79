"""Training the phrase VAE: data preparation from the folk corpus, the TrainTask, and `companion train vae`."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import CheckpointFileError, save_checkpoint
from models.trainer import TrainConfig, train
from models.vae.data import (
    PhraseDataError,
    gather_windows,
    load_phrase_arrays,
    phrase_arrays,
    save_phrase_arrays,
    transpose_windows,
    window_starts,
)
from models.vae.net import PhraseVAENet, VAEConfig, kl_per_phrase

KIND = "phrase_vae"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO / ".carry" / "vae" / "phrases.npz"
DEFAULT_CORPUS_CACHE = REPO / "cache" / "music21"
TOKENS_CONFIG = {"kind": "melody_16th", "steps_per_quarter": 4, "n_classes": 130, "rest": 0, "hold": 1,
                 "note_offset": 2, "melody": "top line; a new onset cuts the note before it"}
# Window lengths (16ths) drawn per batch and how often: 1, 1.5, 2, 3 and 4 bars of 4/4 (2 and 4 bars of 3/4
# and 6/8 are 24 and 48). The 2-bar phrase is the one the player hears most.
LENGTH_WEIGHTS = {16: 0.1, 24: 0.15, 32: 0.35, 48: 0.1, 64: 0.3}
TRANSPOSE_SEMITONES = 6  # training-time transposition, uniform in [-6, +6]


def prepare_data(out: Path, cache_dir: Path = DEFAULT_CORPUS_CACHE, workers: int = 1,
                 limit_per_style: int | None = None, pieces_path: Path | None = None) -> dict[str, Any]:
    """Music21's folk corpus -> the phrase arrays at ``out``: from a consolidated pieces .npz (``pieces_path``,
    as the corpus parse for the continuation model writes it) or parsed here through the shared cache."""
    from models.data.pieces import load_pieces
    from models.tokenizer import TokenizerConfig

    config = TokenizerConfig()
    if pieces_path is not None:
        pieces = [p for p in load_pieces(pieces_path) if p.style == "folk"]
        summary: dict[str, Any] = {"pieces_file": str(pieces_path), "pieces": len(pieces)}
    else:
        from models.data.cache import build_pieces, corpus_sources

        report = build_pieces(corpus_sources(("folk",), limit_per_style), cache_dir, config, workers=workers)
        pieces = report.pieces
        summary = report.summary()
    arrays = phrase_arrays(pieces, config.positions_per_beat)
    save_phrase_arrays(out, arrays)
    return {**summary, "phrase_pieces": int(len(arrays["bar_steps"])), "steps": int(len(arrays["tokens"])),
            "out": str(out)}


class VaeTask:
    """The TrainTask: random bar-aligned windows, transposed; ELBO with KL annealing and free bits."""

    def __init__(self, arrays: dict[str, np.ndarray], config: VAEConfig, *, beta_max: float = 0.2,
                 free_bits_per_step: float = 1.5, anneal_steps: int = 3000, n_valid: int = 2048,
                 data_desc: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> None:
        self.arrays = arrays
        self.tokens = arrays["tokens"]
        self.config = config
        self.beta_max = beta_max
        self.free_bits_per_step = free_bits_per_step
        self.anneal_steps = anneal_steps
        self.data_desc = data_desc or {}
        self.extra = extra or {}
        self.lengths = [n for n in LENGTH_WEIGHTS if n <= config.max_steps]
        self.starts = {n: window_starts(arrays, "train", n) for n in self.lengths}
        self.lengths = [n for n in self.lengths if len(self.starts[n])]
        if not self.lengths:
            raise PhraseDataError(f"no training windows: the phrase arrays {self.data_desc.get('file', '')} hold no "
                                  "train pieces with two notes or more; prepare them from more pieces")
        self.weights = torch.tensor([LENGTH_WEIGHTS[n] for n in self.lengths])
        rng = np.random.default_rng(1234)
        valid = window_starts(arrays, "valid", 32, bar_steps=16)
        if len(valid) == 0:
            valid = window_starts(arrays, "valid", min(self.lengths))
        pick = rng.choice(len(valid), size=min(n_valid, len(valid)), replace=False)
        length = 32 if len(window_starts(arrays, "valid", 32, bar_steps=16)) else min(self.lengths)
        self.valid = torch.from_numpy(gather_windows(self.tokens, np.sort(valid[pick]), length))
        self.step = 0

    def build_model(self) -> nn.Module:
        return PhraseVAENet(self.config)

    def beta(self, step: int) -> float:
        return self.beta_max * min(1.0, step / max(1, self.anneal_steps))

    def train_batch(self, step: int, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        self.step = step  # the loss reads the KL weight of this step (same on every rank)
        length = self.lengths[int(torch.multinomial(self.weights, 1, generator=generator))]
        starts = self.starts[length]
        idx = torch.randint(len(starts), (batch_size,), generator=generator).numpy()
        shifts = torch.randint(-TRANSPOSE_SEMITONES, TRANSPOSE_SEMITONES + 1, (batch_size,),
                               generator=generator).numpy()
        windows = transpose_windows(gather_windows(self.tokens, starts[idx], length), shifts)
        return (torch.from_numpy(windows),)

    def objective(self, logits: torch.Tensor, tokens: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss per step, recon NLL per phrase (B,), KL per phrase (B,)); free bits scale with the length."""
        T = tokens.shape[1]
        recon = F.cross_entropy(logits.float().transpose(1, 2), tokens, reduction="none").sum(dim=1)
        kl = kl_per_phrase(mu.float(), logvar.float())
        loss = (recon + beta * torch.clamp(kl - self.free_bits_per_step * T, min=0.0)).mean() / T
        return loss, recon, kl

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        tokens = batch[0]
        logits, mu, logvar = model(tokens)
        return self.objective(logits, tokens, mu, logvar, self.beta(self.step))[0]

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        inner: PhraseVAENet = getattr(model, "module", model)  # type: ignore[assignment]
        tokens = self.valid.to(device)
        sums = {"valid_loss": 0.0, "recon_nll": 0.0, "kl": 0.0, "tf_acc": 0.0, "greedy_acc": 0.0}
        n = 0
        for i in range(0, len(tokens), 512):
            x = tokens[i : i + 512]
            logits, mu, logvar = inner(x, sample=False)
            loss, recon, kl = self.objective(logits, x, mu, logvar, self.beta_max)
            greedy = inner.generate(mu, x.shape[1])
            b = x.shape[0]
            sums["valid_loss"] += float(loss) * b
            sums["recon_nll"] += float(recon.sum()) / x.shape[1]
            sums["kl"] += float(kl.sum())
            sums["tf_acc"] += float((logits.argmax(-1) == x).float().mean(dim=1).sum())
            sums["greedy_acc"] += float((greedy == x).float().mean(dim=1).sum())
            n += b
        return {k: v / n for k, v in sums.items()}

    def save_best(self, path: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        save_checkpoint(path, model, kind=KIND, model_config=self.config.to_dict(), tokenizer_config=TOKENS_CONFIG,
                        data=self.data_desc, metrics=metrics,
                        extra={**self.extra, "beta_max": self.beta_max, "free_bits_per_step": self.free_bits_per_step,
                               "anneal_steps": self.anneal_steps, "length_weights": {str(k): v for k, v in
                                                                                     LENGTH_WEIGHTS.items()},
                               "transpose_semitones": TRANSPOSE_SEMITONES})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="companion train vae", description="Train the phrase VAE on folk melodies.")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="phrase arrays (.npz); made by --prepare")
    p.add_argument("--prepare", action="store_true", help="parse the music21 folk corpus into --data, then stop")
    p.add_argument("--corpus-cache", type=Path, default=DEFAULT_CORPUS_CACHE, help="parse cache folder")
    p.add_argument("--pieces", type=Path, help="--prepare from this consolidated pieces .npz instead of parsing")
    p.add_argument("--workers", type=int, default=1, help="parse processes for --prepare")
    p.add_argument("--limit-per-style", type=int, help="--prepare only this many corpus files (smoke runs)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "vae", help="run folder (best.pt, last.pt, logs)")
    p.add_argument("--checkpoint", type=Path, help="copy the best checkpoint here at the end")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--max-steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--time-budget-s", type=float, help="lower max-steps once so the run fits this many seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--beta", type=float, default=0.2, help="final KL weight")
    p.add_argument("--free-bits", type=float, default=1.5, help="free nats of KL per 16th step")
    p.add_argument("--anneal-steps", type=int, default=3000, help="steps of the linear KL warm-up from 0")
    for name, default in (("n_embd", 128), ("pos_embd", 32), ("enc_hidden", 256), ("enc_layers", 2),
                          ("dec_hidden", 512), ("dec_layers", 2), ("z_dim", 256)):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    p.add_argument("--phrase-steps", type=int, default=64, help="longest phrase in 16ths")
    p.add_argument("--dropout", type=float, default=0.1)
    return p


def run_guarded(prog: str, command: Callable[[], int]) -> int:
    """Run a VAE command: a missing, corrupt or foreign checkpoint or phrase-data file is one line naming it and
    what to do, exit 2 (the CheckpointFileError of the shared loader, as `companion eval harmonizer` reports)."""
    try:
        return command()
    except (CheckpointFileError, PhraseDataError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


def train_main(argv: list[str] | None = None) -> int:
    """`companion train vae [...]`: prepare the data (--prepare) or train; prints progress, writes the run."""
    args = _parser().parse_args(argv)
    if args.prepare:
        print(json.dumps(prepare_data(args.data, args.corpus_cache, args.workers, args.limit_per_style, args.pieces)))
        return 0
    return run_guarded("companion train vae", lambda: _train(args, argv))


def _train(args: argparse.Namespace, argv: list[str] | None) -> int:
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    arrays = load_phrase_arrays(args.data)
    config = VAEConfig(n_embd=args.n_embd, pos_embd=args.pos_embd, enc_hidden=args.enc_hidden,
                       enc_layers=args.enc_layers, dec_hidden=args.dec_hidden, dec_layers=args.dec_layers,
                       z_dim=args.z_dim, max_steps=args.phrase_steps, dropout=args.dropout)
    counts = {s: int((arrays["split"] == c).sum()) for s, c in (("train", 0), ("valid", 1), ("test", 2))}
    data_desc = {"source": "music21 corpus, folk (essenFolksong, oneills1850, ryansMammoth, airdsAirs, miscFolk, "
                           "nottingham-dataset), monophonic top line on a 16th grid",
                 "split": "models.data.pieces.split_of: SHA-1 of the piece id, 90/5/5", "pieces": counts,
                 "steps": int(len(arrays["tokens"])), "file": args.data.name}
    command = "companion train vae " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    task = VaeTask(arrays, config, beta_max=args.beta, free_bits_per_step=args.free_bits,
                   anneal_steps=args.anneal_steps, data_desc=data_desc, extra={"train_command": command})
    cfg = TrainConfig(out_dir=str(args.out), max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                      min_lr=args.min_lr, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
                      eval_every=args.eval_every, log_every=args.log_every, seed=args.seed, device=args.device,
                      amp=False, resume=args.resume, time_budget_s=args.time_budget_s)
    print(f"phrase VAE: {counts} pieces, windows per length "
          f"{ {n: len(s) for n, s in task.starts.items()} }, valid set {tuple(task.valid.shape)}")
    result = train(task, cfg)
    if args.checkpoint is not None and (args.out / "best.pt").is_file():
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.out / "best.pt", args.checkpoint)
        print(f"best checkpoint copied to {args.checkpoint}")
    return 0 if result["steps"] > 0 else 1

