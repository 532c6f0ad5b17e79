"""The phrase VAE's decoder for one phrase on a CPU, in numpy: the same maths as ``PhraseVAENet.generate``.

Decoding is 32-64 small sequential steps; each torch op costs several microseconds of dispatch on a small
CPU, which is most of the time at batch 1. Here a step is four matrix-vector products and a few vector ops.
"""

from __future__ import annotations

import numpy as np
import torch

from models.vae.net import HOLD, NOTE_OFFSET, START, PhraseVAENet


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class NumpyDecoder:
    """Weights of a trained ``PhraseVAENet`` decoder as float32 arrays; ``generate`` decodes one latent."""

    def __init__(self, net: PhraseVAENet) -> None:
        c = net.config
        self.config = c

        def arr(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())

        d = net.decoder
        w_ih0 = d.weight_ih_l0.detach().float()
        w_tok, self.w_z, w_pos = (arr(w) for w in w_ih0.split([c.n_embd, c.z_dim, c.pos_embd], dim=1))
        self.tok_table = arr(net.dec_tok.weight) @ w_tok.T  # (C + 1, 3H): the previous token's share of the gates
        self.pos_table = arr(net.dec_pos.weight) @ w_pos.T  # (max_steps, 3H)
        self.b_ih0 = arr(d.bias_ih_l0)
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        self.layers = [tuple(arr(getattr(d, f"{name}_l{i}")) for name in names) for i in range(c.dec_layers)]
        self.w_zh, self.b_zh = arr(net.z_to_h.weight), arr(net.z_to_h.bias)
        self.w_head, self.b_head = arr(net.head.weight), arr(net.head.bias)
        hold_ok = np.zeros(c.n_classes + 1, dtype=bool)  # indexed by the previous token (START included)
        hold_ok[NOTE_OFFSET:c.n_classes] = True
        hold_ok[HOLD] = True
        self.hold_ok = hold_ok

    def generate(self, z: np.ndarray, n_steps: int, temperature: float = 0.0, seed: int = 0,
                 allowed: np.ndarray | None = None, note_bias: float = 0.0) -> np.ndarray:
        """(Z,) latent -> (n_steps,) tokens; greedy at temperature 0, else sampled from ``seed``."""
        c = self.config
        if n_steps > c.max_steps:
            raise ValueError(f"cannot decode {n_steps} steps: the model's phrases hold {c.max_steps}")
        H = c.dec_hidden
        z = np.asarray(z, dtype=np.float32)
        h = list(np.tanh(self.w_zh @ z + self.b_zh).reshape(c.dec_layers, H))
        const = self.w_z @ z + self.b_ih0 + self.pos_table[:n_steps]  # (T, 3H)
        add = np.zeros(c.n_classes, dtype=np.float32)
        add[NOTE_OFFSET:] += note_bias
        if allowed is not None:
            add[~allowed] = -np.inf
        rng = np.random.default_rng(seed) if temperature > 0 else None
        out = np.empty(n_steps, dtype=np.int64)
        prev = START
        for t in range(n_steps):
            gi = self.tok_table[prev] + const[t]
            for i, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.layers):
                if i > 0:
                    gi = w_ih @ h[i - 1] + b_ih
                gh = w_hh @ h[i] + b_hh
                r = _sigmoid(gi[:H] + gh[:H])
                u = _sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
                n = np.tanh(gi[2 * H :] + r * gh[2 * H :])
                h[i] = n + u * (h[i] - n)
            logits = self.w_head @ h[-1] + self.b_head + add
            if not self.hold_ok[prev]:
                logits[HOLD] = -np.inf  # HOLD only continues a sounding note
            if rng is None:
                prev = int(np.argmax(logits))
            else:
                scaled = logits / temperature
                p = np.exp(scaled - scaled.max())
                prev = int(rng.choice(len(p), p=p / p.sum()))
            out[t] = prev
        return out


def allowed_array(mask: torch.Tensor | None) -> np.ndarray | None:
    """A (C,) bool torch mask as numpy (None stays None)."""
    return None if mask is None else mask.numpy().astype(bool)

