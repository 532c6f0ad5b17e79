"""Training the chorale harmonizer: the TrainTask for models.trainer and `companion train harmonizer`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.checkpoint import save_checkpoint
from models.chorale.jsb import (
    DEFAULT_JSB_PATH,
    JsbDataError,
    JsbVocab,
    load_jsb,
    step_arrays,
    transpose,
    valid_shifts,
    voice_ranges,
)
from models.chorale.net import ChoraleConfig, ChoraleNet
from models.trainer import TrainConfig, finish_run, train

KIND = "harmonizer"
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "harmonizer.pt"


def pad_pieces(pieces: list[np.ndarray], vocab: JsbVocab, starts: list[int] | None = None,
               length: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pitch pieces (T_i, 4) -> padded (prev (B, T, 4), beat_pos (B, T), targets (B, T, 4) with -1 padding).

    ``starts[i]`` crops piece i from that step (its previous chord stays real context, not BOS).
    """
    starts = starts or [0] * len(pieces)
    length = length or max(len(p) - s for p, s in zip(pieces, starts, strict=True))
    B = len(pieces)
    prev = np.full((B, length, 4), JsbVocab.REST, dtype=np.int64)
    beat = np.zeros((B, length), dtype=np.int64)
    tgt = np.full((B, length, 4), -1, dtype=np.int64)
    for i, (piece, s) in enumerate(zip(pieces, starts, strict=True)):
        p, b, t = step_arrays(vocab.encode_array(piece))
        n = min(length, len(piece) - s)
        prev[i, :n], beat[i, :n], tgt[i, :n] = p[s : s + n], b[s : s + n], t[s : s + n]
    return torch.from_numpy(prev), torch.from_numpy(beat), torch.from_numpy(tgt)


@torch.no_grad()
def nll_sum(net: ChoraleNet, pieces: list[np.ndarray], vocab: JsbVocab, device: torch.device,
            batch: int = 16) -> tuple[float, int]:
    """Total NLL (nats) and token count over whole pieces, one token per voice per step (raster order)."""
    total, count = 0.0, 0
    for i in range(0, len(pieces), batch):
        chunk = pieces[i : i + batch]
        if max(len(p) for p in chunk) > net.config.block_size:
            raise ValueError(f"a piece is longer than the model's context ({net.config.block_size} steps)")
        prev, beat, tgt = (t.to(device) for t in pad_pieces(chunk, vocab))
        logits, _ = net(prev, beat, tgt)
        nll = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), tgt.reshape(-1),
                                                ignore_index=-1, reduction="sum")
        total += float(nll)
        count += int((tgt >= 0).sum())
    return total, count


class HarmonizerTask:
    """JSB train split with transposition augmentation; valid NLL for model selection."""

    def __init__(self, data: dict[str, list[np.ndarray]], config: ChoraleConfig, vocab: JsbVocab, *,
                 max_shift: int, crop_steps: int, data_path: str, command: str) -> None:
        self.config, self.vocab, self.crop_steps = config, vocab, crop_steps
        self.train_pieces, self.valid_pieces = data["train"], data["valid"]
        self.shifts = [valid_shifts(p, vocab, max_shift) for p in self.train_pieces]
        self.ranges = voice_ranges(self.train_pieces)
        self.data_path, self.command, self.max_shift = data_path, command, max_shift

    def build_model(self) -> nn.Module:
        return ChoraleNet(self.config)

    def train_batch(self, step: int, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        idx = torch.randint(0, len(self.train_pieces), (batch_size,), generator=generator).tolist()
        pieces, starts = [], []
        for i in idx:
            shifts = self.shifts[i]
            s = shifts[int(torch.randint(0, len(shifts), (1,), generator=generator))]
            piece = transpose(self.train_pieces[i], s)
            extra = len(piece) - self.crop_steps
            starts.append(int(torch.randint(0, extra + 1, (1,), generator=generator)) if extra > 0 else 0)
            pieces.append(piece)
        return pad_pieces(pieces, self.vocab, starts, self.crop_steps)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        _, loss = model(*batch)
        return loss

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        total, count = nll_sum(model, self.valid_pieces, self.vocab, device)  # type: ignore[arg-type]
        return {"valid_loss": total / count}

    def meta(self) -> dict[str, Any]:
        return {
            "tokenizer_config": {**self.vocab.to_dict(), "voice_ranges": [list(r) for r in self.ranges],
                                 "serialization": "raster S,A,T,B per 16th step; model reads step t-1, "
                                                  "predicts step t voice by voice"},
            "data": {"source": "JSB Chorales 16th grid, voices separated (Jsb16thSeparated.json)",
                     "path": self.data_path, "fit_on": "train", "selected_on": "valid",
                     "train_pieces": len(self.train_pieces),
                     "augmentation": f"transposition -{self.max_shift}..+{self.max_shift} semitones "
                                     "inside the vocabulary"},
        }

    def save_best(self, path: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        m = self.meta()
        save_checkpoint(path, model, kind=KIND, model_config=self.config.to_dict(),
                        tokenizer_config=m["tokenizer_config"], data=m["data"], metrics=metrics,
                        extra={"train_command": self.command})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="companion train harmonizer", description="Train the chorale harmonizer.")
    p.add_argument("--data", default=str(DEFAULT_JSB_PATH), help="Jsb16thSeparated.json")
    p.add_argument("--out", default="runs/harmonizer", help="run folder (best.pt, last.pt, loss.png, log)")
    p.add_argument("--checkpoint", default=None, help="copy the best checkpoint here at the end")
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=8)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--head-hidden", type=int, default=512)
    p.add_argument("--head-layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--max-shift", type=int, default=6, help="transposition augmentation, semitones each way")
    p.add_argument("--crop-steps", type=int, default=512, help="16th steps per training sequence")
    p.add_argument("--max-steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=5e-5)
    p.add_argument("--warmup-steps", type=int, default=300)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--time-budget-s", type=float, default=None,
                   help="lower --max-steps once, early, to fit this many seconds (the value used is logged)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    return p


def train_main(argv: list[str]) -> int:
    """`companion train harmonizer ...`: returns a process exit code."""
    args = build_parser().parse_args(argv)
    try:
        data = load_jsb(args.data)
    except JsbDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    vocab = JsbVocab()
    config = ChoraleConfig(vocab_size=vocab.size, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                           dropout=args.dropout, head_hidden=args.head_hidden, head_layers=args.head_layers)
    command = "companion train harmonizer " + shlex.join(argv)
    task = HarmonizerTask(data, config, vocab, max_shift=args.max_shift, crop_steps=args.crop_steps,
                          data_path=Path(args.data).name, command=command)
    tcfg = TrainConfig(out_dir=args.out, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                       min_lr=args.min_lr, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
                       eval_every=args.eval_every, log_every=args.log_every, seed=args.seed, device=args.device,
                       compile=args.compile, resume=args.resume, time_budget_s=args.time_budget_s)
    return finish_run(args.out, args.checkpoint, train(task, tcfg))
