"""The chord model as it plays: its config and the network one slot at a time in numpy (float32), with no torch
anywhere (the real-time process never imports it): a slot costs a few small matrix products."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.chords import vocab
from models.chords.features import N_FEATURES
from models.config import SavedConfig


@dataclass
class ChordConfig(SavedConfig):
    n_features: int = N_FEATURES
    n_chords: int = vocab.N_CHORDS
    n_embd: int = 32  # previous-chord embedding
    n_hidden: int = 128


class ChordStepper:
    """The network one slot at a time in numpy (float32): `step(h, x, prev)` -> (log-probs, new h)."""

    def __init__(self, state: dict[str, Any], config: ChordConfig) -> None:
        def arr(name: str) -> np.ndarray:  # numpy arrays (the real-time process) or CPU tensors (training, tests)
            return np.asarray(state[name], dtype=np.float32)

        self.config = config
        self.embed = arr("embed.weight")
        self.w_ih, self.w_hh = arr("gru.weight_ih_l0").T.copy(), arr("gru.weight_hh_l0").T.copy()  # (I,3H), (H,3H)
        self.b_ih, self.b_hh = arr("gru.bias_ih_l0"), arr("gru.bias_hh_l0")
        self.w_out, self.b_out = arr("head.weight").T.copy(), arr("head.bias")  # (H, n_chords)

    def initial(self, batch: int = 1) -> np.ndarray:
        return np.zeros((batch, self.config.n_hidden), dtype=np.float32)

    def step(self, h: np.ndarray, x: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """h (B, H), x (B, F), prev (B,) ints -> (log-probs (B, n_chords), h (B, H))."""
        n = self.config.n_hidden
        gi = np.concatenate([x, self.embed[prev]], axis=1) @ self.w_ih + self.b_ih  # (B, 3H)
        gh = h @ self.w_hh + self.b_hh
        r = 1.0 / (1.0 + np.exp(-(gi[:, :n] + gh[:, :n])))
        z = 1.0 / (1.0 + np.exp(-(gi[:, n:2 * n] + gh[:, n:2 * n])))
        cand = np.tanh(gi[:, 2 * n:] + r * gh[:, 2 * n:])
        h_new = (1.0 - z) * cand + z * h
        logits = h_new @ self.w_out + self.b_out
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)), h_new.astype(np.float32)
