"""The drum-bar GAN: a conditional generator (noise + style, tempo, taps, density, velocity, fill -> one bar) and
its discriminator. No I/O.

A bar is three (P, S) planes: hit logits, velocities in [0, 1] and micro-timing offsets in [-0.5, 0.5] steps
(`models/drums/bars.py`). The generator is an MLP: one forward pass makes a whole bar, a few hundred microseconds
on a CPU. Hits are drawn as Bernoulli samples of the hit probabilities with a straight-through estimator in
training, so the discriminator only ever sees bars of 0/1 hits, as real ones are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from models.config import SavedConfig
from models.drums.bars import N_PIECES, STEPS, STYLES

N_CELLS = N_PIECES * STEPS  # 144
BPM_CENTER, BPM_SCALE = 110.0, 40.0


@dataclass
class DrumGANConfig(SavedConfig):
    """Model shape; stored in the checkpoint (``to_dict``) and rebuilt with ``from_dict``."""

    n_styles: int = len(STYLES)
    z_dim: int = 32
    n_hidden: int = 512
    n_layer: int = 3
    d_hidden: int = 512

    @property
    def cond_dim(self) -> int:
        # style one-hot, bpm, taps (S), taps-given flag, density, mean velocity, fill
        return self.n_styles + 1 + STEPS + 1 + 3


@dataclass(frozen=True)
class Conditions:
    """What one or more bars are asked to be; arrays of shape (B,) except ``taps`` (B, S)."""

    style: np.ndarray
    bpm: np.ndarray
    taps: np.ndarray  # player's onset velocities per step (0 = no onset); all-zero with taps_given 0 = no player
    taps_given: np.ndarray
    density: np.ndarray  # 0..1 (bars.density)
    velocity: np.ndarray  # mean hit velocity 0..1
    fill: np.ndarray  # 0 or 1

    def vector(self, config: DrumGANConfig) -> np.ndarray:
        """(B, cond_dim) float32."""
        style = np.eye(config.n_styles, dtype=np.float32)[np.asarray(self.style, dtype=np.int64)]
        cols = [style, ((np.asarray(self.bpm, np.float32) - BPM_CENTER) / BPM_SCALE)[:, None],
                np.asarray(self.taps, np.float32), np.asarray(self.taps_given, np.float32)[:, None],
                np.asarray(self.density, np.float32)[:, None], np.asarray(self.velocity, np.float32)[:, None],
                np.asarray(self.fill, np.float32)[:, None]]
        return np.concatenate(cols, axis=1)


LEAKY_SLOPE = 0.2


def _mlp(n_in: int, n_hidden: int, n_layer: int, n_out: int, sn: bool) -> nn.Sequential:
    wrap = spectral_norm if sn else (lambda m: m)
    layers: list[nn.Module] = []
    for i in range(n_layer):
        layers += [wrap(nn.Linear(n_in if i == 0 else n_hidden, n_hidden)), nn.LeakyReLU(LEAKY_SLOPE)]
    layers.append(wrap(nn.Linear(n_hidden, n_out)))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """(B, Z) noise + (B, C) conditions -> hit logits, velocity, offset, each (B, P, S)."""

    def __init__(self, config: DrumGANConfig) -> None:
        super().__init__()
        self.config = config
        self.net = _mlp(config.z_dim + config.cond_dim, config.n_hidden, config.n_layer, 3 * N_CELLS, sn=False)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net(torch.cat([z, cond], dim=1)).view(-1, 3, N_PIECES, STEPS)  # (B, 3, P, S)
        return out[:, 0], torch.sigmoid(out[:, 1]), 0.5 * torch.tanh(out[:, 2])


class NumpyGenerator:
    """The same forward pass in numpy, for playing: for one bar, torch's per-call overhead is about three times the
    arithmetic (a bar's forward pass 0.25 ms vs 0.8 ms thread time on the 2-core VM). A test holds it to
    Generator.forward."""

    def __init__(self, net: Generator) -> None:
        linears = [m for m in net.net if isinstance(m, nn.Linear)]
        self.layers = [(m.weight.detach().float().numpy().T.copy(), m.bias.detach().float().numpy().copy())
                       for m in linears]  # (in, out), (out,)

    def __call__(self, z: np.ndarray, cond: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, Z) noise + (B, C) conditions -> hit logits, velocity, offset, each (B, P, S) float32."""
        h = np.concatenate([z, cond], axis=1).astype(np.float32)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, LEAKY_SLOPE * h)
        out = h.reshape(-1, 3, N_PIECES, STEPS)  # (B, 3, P, S)
        return out[:, 0], 0.5 + 0.5 * np.tanh(0.5 * out[:, 1]), 0.5 * np.tanh(out[:, 2])  # sigmoid via tanh


class Discriminator(nn.Module):
    """A bar as (B, 3, P, S) planes (hits, hits*velocity, hits*offset) + (B, C) conditions -> (B,) score."""

    def __init__(self, config: DrumGANConfig) -> None:
        super().__init__()
        self.net = _mlp(3 * N_CELLS + config.cond_dim, config.d_hidden, 2, 1, sn=True)

    def forward(self, planes: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([planes.flatten(1), cond], dim=1))[:, 0]


def sample_hits(logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None,
                straight_through: bool = False) -> torch.Tensor:
    """Bernoulli hits from logits (B, P, S); ``straight_through`` passes the probabilities' gradient back."""
    probs = torch.sigmoid(logits / max(temperature, 1e-3))
    u = torch.rand(probs.shape, generator=generator, device=probs.device)
    hard = (u < probs).to(probs.dtype)
    return hard + probs - probs.detach() if straight_through else hard


def planes(hits: torch.Tensor, velocity: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(B, P, S) x3 -> (B, 3, P, S) what the discriminator sees: velocity and offset only where a hit is.

    Offsets are doubled to span [-1, 1] like the other planes, so the discriminator weighs timing as much.
    """
    return torch.stack([hits, hits * velocity, hits * offset * 2.0], dim=1)


def recon_loss(logits: torch.Tensor, velocity: torch.Tensor, offset: torch.Tensor, real: torch.Tensor,
               offset_weight: float = 0.0) -> torch.Tensor:
    """Reconstruction of a real bar (B, 3, P, S planes): BCE of hits + MSE of velocity (and offset) at real hits.

    Offsets are left to the adversarial loss by default: their mean squared error pulls every hit to the average
    push or drag, and the bars come out stiffer than a drummer plays (measured: spread 0.10 vs 0.15 steps).
    """
    hits = real[:, 0]
    n = hits.sum().clamp(min=1.0)
    bce = F.binary_cross_entropy_with_logits(logits, hits)
    vel = ((velocity * hits - real[:, 1]) ** 2).sum() / n
    off = ((2.0 * offset * hits - real[:, 2]) ** 2).sum() / n
    return bce + vel + offset_weight * off
