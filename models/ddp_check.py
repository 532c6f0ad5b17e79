"""A tiny deterministic training run that checks torchrun + DDP against one process (same loss curve).

Run it once as one process and once under torchrun with the same global batch; the two ``losses.json`` files
must agree step for step (DDP averages the gradients of equal shards, which is the full-batch mean gradient):

    python -m models.ddp_check --out /tmp/one --steps 20
    torchrun --standalone --nproc_per_node=2 -m models.ddp_check --out /tmp/two --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.checkpoint import save_checkpoint
from models.trainer import TrainConfig, train
from models.transformer import GPT, GPTConfig

LOSSES_FILE = "losses.json"


class CheckTask:
    """Synthetic token sequences from a fixed seed, a 2-layer 32-wide GPT, dropout 0: a TrainTask."""

    def __init__(self, vocab_size: int = 32, seq_len: int = 24, n_sequences: int = 256,
                 data_seed: int = 1234) -> None:
        self.vocab_size = vocab_size
        g = torch.Generator().manual_seed(data_seed)
        # Each sequence walks up the vocabulary by steps of 1..3 from a random start: learnable, not trivial.
        start = torch.randint(0, vocab_size, (n_sequences, 1), generator=g)
        steps = torch.randint(1, 4, (n_sequences, seq_len), generator=g)
        walk = (start + torch.cumsum(steps, dim=1)) % vocab_size  # (N, seq_len)
        self.sequences = torch.cat((start, walk), dim=1)  # (N, seq_len + 1)

    def build_model(self) -> nn.Module:
        # The trainer seeds each rank differently: the check relies on DDP broadcasting rank 0's weights.
        return GPT(GPTConfig(vocab_size=self.vocab_size, block_size=self.sequences.shape[1], n_layer=2,
                             n_head=2, n_embd=32, dropout=0.0))

    def train_batch(self, step: int, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        rows = torch.randint(0, self.sequences.shape[0], (batch_size,), generator=generator)
        seq = self.sequences[rows]  # (B, seq_len + 1)
        return seq[:, :-1], seq[:, 1:]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        # mean over every token: no ignored targets, so equal shards weigh equally in DDP's gradient average
        _, loss = model(batch[0], batch[1])
        return loss

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        x, y = self.train_batch(0, torch.Generator().manual_seed(99), 32)
        _, loss = model(x.to(device), y.to(device))
        return {"valid_loss": float(loss)}

    def save_best(self, path: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        save_checkpoint(path, model, kind="ddp_check", model_config={}, tokenizer_config={}, data={},
                        metrics=metrics)


def run_check(out_dir: Path, steps: int, batch_size: int, device: str = "cpu",
              seed: int = 0) -> dict[str, Any]:
    """Train CheckTask for ``steps`` steps, logging every step; rank 0 writes and returns ``losses.json``."""
    cfg = TrainConfig(out_dir=str(out_dir / "run"), max_steps=steps, batch_size=batch_size, lr=1e-2,
                      min_lr=1e-3, warmup_steps=2, weight_decay=0.1, grad_clip=1.0, eval_every=steps,
                      log_every=1, seed=seed, device=device, amp=False)
    result = train(CheckTask(), cfg, log=lambda msg: None)
    report: dict[str, Any] = {}
    if int(os.environ.get("RANK", "0")) == 0:
        log_lines = (out_dir / "run" / "train_log.jsonl").read_text().splitlines()
        history = [json.loads(line) for line in log_lines]
        report = {"world_size": result["world_size"], "batch_size": batch_size, "steps": result["steps"],
                  "device": result["device"],
                  "train_loss": [h["train_loss"] for h in history if "train_loss" in h],
                  "valid_loss": result["best_valid_loss"]}
        (out_dir / LOSSES_FILE).write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.ddp_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for losses.json and the run's files")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps (default 20)")
    parser.add_argument("--batch-size", type=int, default=8, help="global batch over all ranks (default 8)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.batch_size % world:
        parser.error(f"--batch-size {args.batch_size} must be a multiple of the process count ({world})")
    report = run_check(args.out, args.steps, args.batch_size, args.device, args.seed)
    if report:
        print(f"world size {report['world_size']}: final train loss {report['train_loss'][-1]:.6f} "
              f"-> {args.out / LOSSES_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
