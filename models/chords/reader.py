"""The whole-melody chord reader for offline harmonizing: a bidirectional GRU over every slot's look-ahead
features (features.song_arrays), so that a slot's chord hears the whole phrase on both sides, not one slot
ahead. Numpy (float32) for `companion generate harmonize` and the evaluation; trained by net.ReaderNet. Live
playing keeps the unidirectional stepper (stepper.py): a player's next notes are not known.

Its weights sit in the chord checkpoint beside the live model's, under PREFIX; an ensemble of several readers
(seeds) averages their probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.chords import vocab
from models.chords.features import N_FEATURES
from models.config import SavedConfig

PREFIX = "reader."  # state-dict names of the readers in a chord checkpoint: reader.<i>.<ReaderNet name>


@dataclass
class ReaderConfig(SavedConfig):
    n_features: int = N_FEATURES
    n_chords: int = vocab.N_CHORDS
    n_hidden: int = 128  # per direction
    n_layer: int = 2
    dropout: float = 0.2


def _gru_pass(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray) -> np.ndarray:
    """(S, I) -> (S, H) hidden states of one GRU direction (torch's gate order r, z, n), from h = 0."""
    n = w_hh.shape[1]
    gi = x @ w_ih.T + b_ih  # (S, 3H): every slot's input gates in one product
    h = np.zeros(n, dtype=np.float32)
    out = np.zeros((len(x), n), dtype=np.float32)
    for s in range(len(x)):
        gh = w_hh @ h + b_hh
        r = 1.0 / (1.0 + np.exp(-(gi[s, :n] + gh[:n])))
        z = 1.0 / (1.0 + np.exp(-(gi[s, n:2 * n] + gh[n:2 * n])))
        h = (1.0 - z) * np.tanh(gi[s, 2 * n:] + r * gh[2 * n:]) + z * h
        out[s] = h
    return out


class SongReader:
    """`log_probs(x)`: (S, F) look-ahead features of a whole melody -> (S, n_chords) log-probabilities (in the
    frame the features were read in), the mean probability of the ensemble's readers."""

    def __init__(self, state: dict[str, Any], config: ReaderConfig, n_models: int) -> None:
        self.config = config
        self.models = [self._weights(state, f"{PREFIX}{i}.") for i in range(n_models)]

    def _weights(self, state: dict[str, Any], prefix: str) -> dict[str, np.ndarray]:
        """One reader's arrays by their ReaderNet names; KeyError naming the first one missing."""
        names = ["head.weight", "head.bias"] + [f"gru.{kind}_l{layer}{way}" for layer in range(self.config.n_layer)
                                                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                                                for way in ("", "_reverse")]
        return {name: np.asarray(state[prefix + name], dtype=np.float32) for name in names}

    def _one(self, w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        h = x.astype(np.float32)
        for layer in range(self.config.n_layer):
            args = [f"gru.{kind}_l{layer}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            forward = _gru_pass(h, *(w[a] for a in args))
            backward = _gru_pass(h[::-1], *(w[a + "_reverse"] for a in args))[::-1]
            h = np.concatenate([forward, backward], axis=1)  # (S, 2H)
        logits = h @ w["head.weight"].T + w["head.bias"]
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def log_probs(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.zeros((0, self.config.n_chords), dtype=np.float32)
        probs = np.mean([np.exp(self._one(w, x)) for w in self.models], axis=0)
        return np.log(np.maximum(probs, 1e-12)).astype(np.float32)
