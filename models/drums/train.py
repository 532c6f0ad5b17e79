"""Train the drum-bar GAN on the Groove bars (.npz from models.drums.groove): hinge GAN + optional reconstruction.

`companion train drums --bars drum_bars.npz -o drums.pt [--rec-weight 10] [--steps 20000] [--max-seconds 150]`.
Trains on the train split only; the validation split gives the reconstruction figure logged while training;
the test split is never read here (it is the evaluation's). Needs numpy and torch only.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.checkpoint import save_checkpoint
from models.drums.bars import N_PIECES, PIECE_NOTES, PIECES, STEPS, STYLES, density, mean_velocity, taps
from models.drums.gan import (
    BPM_CENTER,
    BPM_SCALE,
    Discriminator,
    DrumGANConfig,
    Generator,
    planes,
    recon_loss,
    sample_hits,
)
from models.drums.groove import BarSet

KIND = "drum_gan"
TAP_DROP = 0.3  # share of training bars with no player taps at all (the drummer plays alone)


def bar_layout() -> dict[str, object]:
    """What a bar is, stored in the checkpoint beside the model config."""
    return {"steps": STEPS, "pieces": list(PIECES), "notes": list(PIECE_NOTES), "styles": list(STYLES),
            "offset_unit": "16th steps"}


class BarTensors:
    """A split's bars on the device, with the per-bar conditioning figures computed once."""

    def __init__(self, bars: BarSet, device: torch.device) -> None:
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)

        self.real = planes(t(bars.hits), t(bars.velocity), t(bars.offset))  # (N, 3, P, S)
        self.style = torch.as_tensor(bars.style, device=device)
        self.bpm = t((bars.bpm - BPM_CENTER) / BPM_SCALE)
        self.taps = t(taps(bars.hits, bars.velocity))  # (N, S)
        self.density = t(density(bars.hits))
        self.velocity = t(mean_velocity(bars.hits, bars.velocity))
        self.fill = t(bars.fill)
        self.n = len(bars)

    def batch(self, idx: torch.Tensor, config: DrumGANConfig, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        """(real planes, conditions) for rows ``idx``; taps thinned at random, and dropped for TAP_DROP of rows,
        since a player taps fewer onsets than the drummer plays, or none."""
        B = len(idx)
        dev = self.real.device
        given = (torch.rand(B, device=dev, generator=gen) >= TAP_DROP).float()
        keep_p = 0.4 + 0.6 * torch.rand(B, 1, device=dev, generator=gen)
        keep = (torch.rand(B, STEPS, device=dev, generator=gen) < keep_p).float()
        tap = self.taps[idx] * keep * given[:, None]
        cond = torch.cat([F.one_hot(self.style[idx], config.n_styles).float(), self.bpm[idx, None], tap,
                          given[:, None], self.density[idx, None], self.velocity[idx, None], self.fill[idx, None]], 1)
        return self.real[idx], cond


def train(bars: BarSet, config: DrumGANConfig, *, rec_weight: float, rec_offset: float, steps: int, batch: int,
          lr: float, max_seconds: float, seed: int, device: torch.device,
          log_every: int = 500) -> tuple[Generator, dict]:
    """Alternate D and G updates (hinge loss); returns the EMA generator and the training figures."""
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    train_set = BarTensors(bars.of_split("train"), device)
    val_set = BarTensors(bars.of_split("validation"), device)
    G, D = Generator(config).to(device), Discriminator(config).to(device)
    G_ema = copy.deepcopy(G).eval()
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    started = time.monotonic()
    log: dict[str, float] = {}
    step = 0
    for step in range(1, steps + 1):
        idx = torch.randint(0, train_set.n, (batch,), device=device, generator=gen)
        real, cond = train_set.batch(idx, config, gen)
        z = torch.randn(batch, config.z_dim, device=device, generator=gen)
        logits, vel, off = G(z, cond)
        fake = planes(sample_hits(logits, generator=gen, straight_through=True), vel, off)
        # discriminator: hinge
        d_loss = F.relu(1 - D(real, cond)).mean() + F.relu(1 + D(fake.detach(), cond)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # generator: adversarial + reconstruction of the bar its conditions came from
        adv = -D(fake, cond).mean()
        rec = recon_loss(logits, vel, off, real, rec_offset)
        g_loss = adv + rec_weight * rec if rec_weight > 0 else adv
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for pe, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                pe.lerp_(p, 1 - decay)
        if step % log_every == 0 or step == steps:
            log = {"step": step, "d_loss": d_loss.item(), "adv": adv.item(), "rec": rec.item(),
                   "val_rec": validation_recon(G_ema, val_set, config, gen), "seconds": time.monotonic() - started}
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in log.items()),
                  flush=True)
        if time.monotonic() - started > max_seconds:
            break
    if log.get("step") != step:
        log = {"step": step, "val_rec": validation_recon(G_ema, val_set, config, gen),
               "seconds": time.monotonic() - started}
    return G_ema.cpu(), log


@torch.no_grad()
def validation_recon(G: Generator, data: BarTensors, config: DrumGANConfig, gen: torch.Generator) -> float:
    idx = torch.arange(data.n, device=data.real.device)
    real, cond = data.batch(idx, config, gen)
    z = torch.randn(data.n, config.z_dim, device=real.device, generator=gen)
    return float(recon_loss(*G(z, cond), real))


def train_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="companion train drums", description=__doc__)
    p.add_argument("--bars", required=True, help="bar cache .npz made by `python -m models.drums.groove`")
    p.add_argument("-o", "--output", default="models/checkpoints/drums.pt")
    p.add_argument("--rec-weight", type=float, default=10.0, help="0 = pure GAN")
    p.add_argument("--rec-offset", type=float, default=0.0, help="weight of the offsets in the reconstruction")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--max-seconds", type=float, default=math.inf, help="stop early after this long")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--z-dim", type=int, default=DrumGANConfig.z_dim)
    p.add_argument("--hidden", type=int, default=DrumGANConfig.n_hidden)
    args = p.parse_args(argv)
    if not Path(args.bars).is_file():
        print(f"companion train drums: {args.bars} not found; build it with "
              "`python -m models.drums.groove --data ../shared/data/groove -o drum_bars.npz`", file=sys.stderr)
        return 2
    bars = BarSet.load(args.bars)
    config = DrumGANConfig(z_dim=args.z_dim, n_hidden=args.hidden)
    G, log = train(bars, config, rec_weight=args.rec_weight, rec_offset=args.rec_offset, steps=args.steps,
                   batch=args.batch, lr=args.lr, max_seconds=args.max_seconds, seed=args.seed,
                   device=torch.device(args.device))
    counts = {s: int((bars.split == i).sum()) for i, s in enumerate(("train", "validation", "test"))}
    data = {"corpus": "Groove MIDI Dataset, Gillick et al. 2019 (CC BY 4.0)", "bars": counts,
            "trained_on": "train split", "held_out": "test split (never read in training)",
            "pieces": N_PIECES}
    extra = {"rec_weight": args.rec_weight, "rec_offset": args.rec_offset, "steps": args.steps, "batch": args.batch,
             "lr": args.lr, "seed": args.seed, "loss": "hinge GAN" + (f" + {args.rec_weight} x reconstruction"
                                                      if args.rec_weight > 0 else " (pure)")}
    save_checkpoint(args.output, G, kind=KIND, model_config=config.to_dict(), tokenizer_config=bar_layout(),
                    data=data, metrics={"training": log}, extra=extra)
    print(f"saved {args.output} ({Path(args.output).stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(train_main(sys.argv[1:]))
