"""How close a set of drum bars is to real ones: distribution distances per figure and a two-sample classifier."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.drums.bars import N_PIECES, PIECES, syncopation, timing_spread


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """1-D Wasserstein-1 distance between two samples (0 when equal; nan when either is empty)."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    q = np.linspace(0, 1, 201)
    return float(np.mean(np.abs(np.quantile(a, q) - np.quantile(b, q))))


def figures(hits: np.ndarray, velocity: np.ndarray, offset: np.ndarray) -> dict[str, list[np.ndarray]]:
    """The per-bar (or per-hit) samples each distance compares; bars (B, P, S)."""
    on = hits > 0.5
    return {
        "density": [hits[:, p].sum(axis=1) for p in range(N_PIECES)],  # hits per bar, per piece
        "velocity": [velocity[:, p][on[:, p]] for p in range(N_PIECES)],  # velocity of each hit, per piece
        "syncopation": [syncopation(hits)],
        "timing_spread": [timing_spread(hits, offset)],
    }


def distances(real: dict[str, list[np.ndarray]], fake: dict[str, list[np.ndarray]]) -> dict[str, float]:
    """Mean W1 distance per figure (over pieces for density and velocity, skipping pieces real bars lack)."""
    out = {}
    for name, real_parts in real.items():
        ds = [wasserstein(r, f) if len(f) else 1.0 for r, f in zip(real_parts, fake[name], strict=True) if len(r) >= 5]
        out[name] = float(np.mean(ds)) if ds else float("nan")
    return out


def per_piece_density(hits: np.ndarray) -> dict[str, float]:
    return {p: float(hits[:, i].sum(axis=1).mean()) for i, p in enumerate(PIECES)}


def classifier_accuracy(real: np.ndarray, fake: np.ndarray, groups: np.ndarray | None = None, *, seed: int = 0,
                        folds: int = 4, epochs: int = 300) -> float:
    """Two-sample test: a small MLP learns to tell real bars from generated ones; its accuracy on bars it did not
    learn from, over ``folds`` folds (0.5 means it cannot tell them apart).

    Inputs (N, 3, P, S) planes, paired: ``fake[i]`` was made for ``real[i]``, and ``groups[i]`` (the performance a
    real bar comes from) keeps whole groups on one side of each fold. Without groups every bar is its own group,
    and a classifier recognizes the performances it learned from in the other bars of the same performance (real
    train bars of the right style score 84 % against the Groove test bars so): that tests memory, not realness.
    """
    n = min(len(real), len(fake))
    groups = np.arange(n) if groups is None else np.asarray(groups)[:n]
    rng = np.random.default_rng(seed)
    names = rng.permutation(np.unique(groups))
    fold_of = dict(zip(names.tolist(), (np.arange(len(names)) % folds).tolist(), strict=True))
    fold = np.array([fold_of[g] for g in groups.tolist()] * 2)
    x = torch.as_tensor(np.concatenate([real[:n], fake[:n]]).reshape(2 * n, -1), dtype=torch.float32)
    y = torch.cat([torch.ones(n), torch.zeros(n)])
    right = 0
    for k in range(folds):
        train_idx = torch.as_tensor(np.flatnonzero(fold != k))
        test_idx = torch.as_tensor(np.flatnonzero(fold == k))
        right += _fit_and_count(x, y, train_idx, test_idx, seed + k, epochs)
    return right / (2 * n)


def _fit_and_count(x: torch.Tensor, y: torch.Tensor, train_idx: torch.Tensor, test_idx: torch.Tensor, seed: int,
                   epochs: int) -> int:
    """Train the two-sample classifier on ``train_idx`` rows; how many ``test_idx`` rows it gets right."""
    # standardized by the training rows: every cell weighs the same from the first step (raw 0/1 cells leave the
    # bias to do the work, and a few hundred steps are not enough for it)
    mean, std = x[train_idx].mean(0), x[train_idx].std(0).clamp(min=1e-3)
    x = (x - mean) / std
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        opt.zero_grad()
        loss_fn(net(x[train_idx])[:, 0], y[train_idx]).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = (net(x[test_idx])[:, 0] > 0).float()
    return int((pred == y[test_idx]).sum())


def kick_snare_agreement(hits: np.ndarray, accent: np.ndarray) -> float:
    """Share of the player's accented steps (B, S) on which the bars (B, P, S) have a kick or a snare."""
    ks = (hits[:, 0] > 0.5) | (hits[:, 1] > 0.5)
    n = accent.sum()
    return float((ks & accent).sum() / n) if n else float("nan")
