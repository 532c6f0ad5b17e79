"""The generic training loop: a CPU smoke run learns, writes its files, and resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from models.checkpoint import load_checkpoint, save_checkpoint
from models.trainer import TrainConfig, lr_at, train
from models.transformer import GPT, GPTConfig


class FakeCountingTask:
    """Sequences that count up mod 7: easy to learn."""

    def build_model(self) -> nn.Module:
        return GPT(GPTConfig(vocab_size=7, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0))

    def train_batch(self, step: int, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        start = torch.randint(0, 7, (batch_size, 1), generator=generator)
        seq = (start + torch.arange(13)) % 7
        return seq[:, :-1], seq[:, 1:]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        _, loss = model(batch[0], batch[1])
        return loss

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        x, y = self.train_batch(0, torch.Generator().manual_seed(5), 8)
        _, loss = model(x.to(device), y.to(device))
        return {"valid_loss": float(loss)}

    def save_best(self, path: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        save_checkpoint(path, model, kind="fake", model_config={}, tokenizer_config={}, data={},
                        metrics=metrics)


def test_smoke_run_learns_and_writes_files(tmp_path: Path) -> None:
    cfg = TrainConfig(out_dir=str(tmp_path), max_steps=60, batch_size=8, lr=1e-2, min_lr=1e-3,
                      warmup_steps=5, eval_every=30, log_every=10, device="cpu")
    lines: list[str] = []
    result = train(FakeCountingTask(), cfg, log=lines.append)
    assert result["steps"] == 60
    assert result["best_valid_loss"] < 0.5
    assert (tmp_path / "loss.png").stat().st_size > 1000
    history = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert any("valid_loss" in h for h in history)
    _, meta = load_checkpoint(tmp_path / "best.pt", kind="fake")
    assert meta["metrics"]["step"] in (30, 60)
    # A progress line from the very first step: a bar, the step, the loss and the time left.
    assert any("] step 1/60  loss " in line and "eta " in line for line in lines), lines

    # resume: continue the same run to 80 steps from last.pt
    cfg2 = TrainConfig(**{**cfg.__dict__, "max_steps": 80, "resume": True})
    lines2: list[str] = []
    result2 = train(FakeCountingTask(), cfg2, log=lines2.append)
    assert any("resumed" in line and "step 60" in line for line in lines2)
    assert result2["steps"] == 80


class InterruptedTask(FakeCountingTask):
    """Ctrl-C arrives during the forward pass of the `at`-th step (KeyboardInterrupt, as Python raises it)."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return super().loss(model, batch)


def test_ctrl_c_keeps_a_checkpoint_that_resumes_as_if_never_stopped(tmp_path: Path) -> None:
    def config(out: Path, **changes: Any) -> TrainConfig:
        return TrainConfig(**{**dict(out_dir=str(out), max_steps=40, batch_size=8, lr=1e-2, min_lr=1e-3,
                                     warmup_steps=5, eval_every=30, device="cpu"), **changes})

    whole = train(FakeCountingTask(), config(tmp_path / "whole"), log=lambda _: None)
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        train(InterruptedTask(at=13), config(tmp_path / "cut"), log=lines.append)
    assert any("stopped by Ctrl-C at step 12/40" in line and "--resume" in line for line in lines), lines
    saved = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert saved["step"] == 12  # the 12 whole steps, not the last evaluation (there was none yet)
    resumed = train(FakeCountingTask(), config(tmp_path / "cut", resume=True), log=lambda _: None)
    assert resumed["steps"] == 40 and resumed["best_valid_loss"] == pytest.approx(whole["best_valid_loss"])
    end_whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    end_resumed = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(end_whole[k], end_resumed[k]) for k in end_whole)


def test_schedule_warms_up_then_decays() -> None:
    cfg = TrainConfig(out_dir="x", lr=1.0, min_lr=0.1, warmup_steps=10)
    assert lr_at(0, cfg, 100) == 0.1
    assert lr_at(9, cfg, 100) == 1.0
    assert abs(lr_at(100, cfg, 100) - 0.1) < 1e-9
    assert lr_at(50, cfg, 100) < lr_at(20, cfg, 100)
