"""A generic training loop (CPU, one GPU, or torchrun + DDP); model and data specifics live in a TrainTask."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class TrainConfig:
    """Optimizer, schedule and bookkeeping; ``batch_size`` is the global batch over all ranks."""

    out_dir: str
    max_steps: int = 5000
    batch_size: int = 32
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 250
    log_every: int = 50
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on GPU
    compile: bool = False
    resume: bool = False
    # When set, max_steps is lowered once (after `calibrate_steps`, before warmup ends) so that the run fits
    # the budget; the value used is logged and returned, so the run can be reproduced with --max-steps.
    time_budget_s: float | None = None
    calibrate_steps: int = 60


class TrainTask(Protocol):
    """What a model brings to the loop."""

    def build_model(self) -> nn.Module: ...

    def train_batch(self, step: int, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        """The global batch for ``step`` (same on every rank: draw only from ``generator``); dim 0 = batch."""
        ...

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Validation metrics; must hold 'valid_loss' (lower is better)."""
        ...

    def save_best(self, path: Path, model: nn.Module, metrics: dict[str, Any]) -> None: ...


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_dist(device_pref: str) -> tuple[_Dist, torch.device]:
    use_cuda = torch.cuda.is_available() and device_pref in ("auto", "cuda")
    if device_pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA GPU is visible")
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        d = _Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    else:
        d = _Dist()
    if use_cuda:
        torch.cuda.set_device(d.local_rank)
        return d, torch.device("cuda", d.local_rank)
    return d, torch.device("cpu")


def lr_at(step: int, cfg: TrainConfig, max_steps: int) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.min_lr at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def plot_losses(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Write the train/valid loss curves as a PNG (matplotlib, Agg)."""
    try:
        import matplotlib
    except ImportError:  # training must not fail at the end for want of a plot; the log has the numbers
        print(f"matplotlib is not installed: {path} not written (train_log.jsonl has the losses)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(h["step"], h["train_loss"]) for h in history if "train_loss" in h]
    valid = [(h["step"], h["valid_loss"]) for h in history if "valid_loss" in h]
    if train:
        ax.plot(*zip(*train, strict=True), label="train (per log interval)", lw=1)
    if valid:
        ax.plot(*zip(*valid, strict=True), label="valid", marker="o", ms=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("NLL per token (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class Progress:
    """A progress line from the first step: a bar, the step, the loss, seconds per step and the time left.
    On a terminal it is redrawn in place; elsewhere (a log file) a line every `every_s` seconds."""

    def __init__(self, say: Callable[[str], None], max_steps: int, first_step: int = 0, every_s: float = 10.0,
                 width: int = 24) -> None:
        self.say, self.max_steps, self.every_s, self.width = say, max_steps, every_s, width
        self._first_step, self._started = first_step, time.monotonic()
        self._said_at = -math.inf
        self._tty = sys.stderr.isatty()

    def line(self, step: int, loss: float, now: float) -> str:
        done = step - self._first_step
        per_step = (now - self._started) / max(1, done)
        left = per_step * max(0, self.max_steps - step)
        filled = round(self.width * step / max(1, self.max_steps))
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] step {step}/{self.max_steps}  loss {loss:.4f}  "
                f"{per_step:.2f} s/step  eta {_duration(left)}")

    def step(self, step: int, loss: torch.Tensor) -> None:
        now = time.monotonic()
        first = step == self._first_step + 1
        if not (first or step == self.max_steps or self._tty or now - self._said_at >= self.every_s):
            return
        self._said_at = now
        text = self.line(step, float(loss.detach()), now)  # a sync on GPU: only when a line is written
        self.say(f"\r{text}   " if self._tty else text)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def train(task: TrainTask, cfg: TrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the loop; writes best.pt (via task.save_best), last.pt (resume), train_log.jsonl and loss.png."""
    d, device = _setup_dist(cfg.device)
    out = Path(cfg.out_dir)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    say = log if d.main else (lambda _msg: None)
    if cfg.batch_size % d.world:
        raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of the world size {d.world}")
    per_rank = cfg.batch_size // d.world

    torch.manual_seed(cfg.seed + d.rank)
    random.seed(cfg.seed + d.rank)
    model = task.build_model().to(device)
    fused = device.type == "cuda"
    if hasattr(model, "configure_optimizer"):
        opt = model.configure_optimizer(cfg.weight_decay, cfg.lr, fused=fused)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    step, max_steps, best, history = 0, cfg.max_steps, float("inf"), []
    last_path = out / "last.pt"
    if cfg.resume and last_path.is_file():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, max_steps, best = state["step"], state["max_steps"], state["best"]
        if cfg.max_steps != state["config"]["max_steps"]:  # asked to train longer (or shorter) than before
            max_steps = cfg.max_steps
        history = state["history"]
        _set_rng_state(state["rng"][min(d.rank, len(state["rng"]) - 1)])
        say(f"resumed from {last_path} at step {step} (best valid {best:.4f})")
    run_model: nn.Module = model
    if cfg.compile:
        run_model = torch.compile(model)  # type: ignore[assignment]
    if d.world > 1:
        run_model = nn.parallel.DistributedDataParallel(
            run_model, device_ids=[d.local_rank] if device.type == "cuda" else None)
    amp = cfg.amp and device.type == "cuda"
    n_params = sum(p.numel() for p in model.parameters())
    say(f"training on {device} x{d.world}: {n_params / 1e6:.2f}M parameters, global batch {cfg.batch_size}, "
        f"max_steps {max_steps}")

    def evaluate() -> dict[str, float]:
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            metrics = task.evaluate(model, device)
        model.train()
        return metrics

    def save_last(gather: bool = True) -> None:
        rngs = [_rng_state()]
        if d.world > 1 and gather:
            gathered: list[Any] = [None] * d.world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if d.main:
            tmp = last_path.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "max_steps": max_steps, "best": best, "history": history, "rng": rngs,
                        "config": asdict(cfg)}, tmp)
            os.replace(tmp, last_path)

    t_start = time.monotonic()
    t_calib = t_start
    run_loss = torch.zeros((), device=device)
    n_loss = 0
    model.train()
    progress = Progress(say, max_steps, first_step=step)
    updating = False  # True while the optimizer writes the weights: a Ctrl-C then leaves them half updated
    try:
        while step < max_steps:
            if cfg.time_budget_s and step == cfg.calibrate_steps and not cfg.resume:
                rate = (step - 10) / max(1e-6, time.monotonic() - t_calib)
                left = cfg.time_budget_s - (time.monotonic() - t_start)
                fit = step + int(0.85 * left * rate)  # 15 % kept for evaluation and saving
                fit_t = torch.tensor([min(max_steps, fit)], device=device)
                if d.world > 1:
                    dist.broadcast(fit_t, 0)
                max_steps = max(int(fit_t.item()), cfg.warmup_steps + 1)
                say(f"time budget {cfg.time_budget_s:.0f}s at {rate:.1f} steps/s: max_steps set to {max_steps}")
                progress.max_steps = max_steps
            if step == 10:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t_calib = time.monotonic()
            lr = lr_at(step, cfg, max_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            batch = task.train_batch(step, g, cfg.batch_size)
            shard = tuple(t[d.rank * per_rank : (d.rank + 1) * per_rank].to(device, non_blocking=True) for t in batch)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = task.loss(run_model, shard)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            updating = True
            opt.step()
            run_loss += loss.detach()
            n_loss += 1
            step += 1
            updating = False
            progress.step(step, loss)
            if step % cfg.log_every == 0 or step == max_steps:
                if d.world > 1:
                    dist.all_reduce(run_loss, op=dist.ReduceOp.AVG)
                train_loss = run_loss.item() / n_loss
                run_loss.zero_()
                n_loss = 0
                elapsed = time.monotonic() - t_start
                history.append({"step": step, "train_loss": train_loss, "lr": lr, "elapsed_s": elapsed})
            if step % cfg.eval_every == 0 or step == max_steps:
                metrics = evaluate() if d.main else {}
                if d.main:
                    v = metrics["valid_loss"]
                    history.append({"step": step, **metrics})
                    mark = ""
                    if v < best:
                        best = v
                        task.save_best(out / "best.pt", model, {**metrics, "step": step})
                        mark = "  (best, saved)"
                    say(f"eval step {step}: " + "  ".join(f"{k} {val:.4f}" for k, val in metrics.items()) + mark)
                save_last()
                if d.world > 1:
                    dist.barrier()
    except KeyboardInterrupt:
        if updating or not d.main:
            say(f"\nstopped by Ctrl-C at step {step}; {last_path} holds the last evaluation (resume with --resume)")
        else:  # between two updates the weights are whole: keep them, so that --resume loses nothing
            save_last(gather=False)
            say(f"\nstopped by Ctrl-C at step {step}/{max_steps}: saved {last_path}; run the same command "
                "with --resume to go on from there")
        raise
    train_time_s = time.monotonic() - t_start
    result: dict[str, Any] = {"best_valid_loss": best, "steps": step, "max_steps": max_steps,
                              "train_time_s": round(train_time_s, 1), "world_size": d.world,
                              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                              "parameters": n_params}
    best_step = [h["step"] for h in history if h.get("valid_loss") == best]
    result["best_step"] = best_step[0] if best_step else None
    if d.main:
        with open(out / "train_log.jsonl", "w") as f:
            for h in history:
                f.write(json.dumps(h) + "\n")
        plot_losses(history, out / "loss.png", f"{type(model).__name__}: best valid {best:.4f}")
        say(f"\ndone: {step} steps in {train_time_s:.0f}s, best valid loss {best:.4f} (step {result['best_step']})")
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def finish_run(out_dir: str, checkpoint: str | None, result: dict[str, Any]) -> int:
    """After `train`: copy the run's best.pt to `checkpoint` (when given) and print the result as JSON; exit 0."""
    best = Path(out_dir) / "best.pt"
    if checkpoint and best.is_file():
        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, checkpoint)
    print(json.dumps({"result": result, "best_checkpoint": str(best)}))
    return 0
