"""The chorale network: a causal Transformer over 16th steps plus a small voice head (raster order S, A, T, B)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.config import SavedConfig
from models.transformer import GPT, GPTConfig, KVCache

N_VOICES = 4
N_BEAT_POS = 4  # 16th position inside the beat


@dataclass
class ChoraleConfig(SavedConfig):
    """Shape of ChoraleNet; stored in the checkpoint."""

    vocab_size: int
    block_size: int = 768  # steps of context (the longest JSB chorale has 640)
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 256
    dropout: float = 0.2
    head_hidden: int = 512
    head_layers: int = 2

    def gpt_config(self) -> GPTConfig:
        # the step token: soprano of the previous step as the token, alto/tenor/bass and beat position as extras
        return GPTConfig(vocab_size=self.vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout,
                         n_extra=(self.vocab_size, self.vocab_size, self.vocab_size, N_BEAT_POS))


class ResidualMLP(nn.Module):
    """x + W2 gelu(W1 ln(x))."""

    def __init__(self, n_embd: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(n_embd)
        self.fc = nn.Linear(n_embd, hidden)
        self.proj = nn.Linear(hidden, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.proj(F.gelu(self.fc(self.ln(x)))))


class VoiceHead(nn.Module):
    """p(voice v of step t | context h_t, voices < v of step t): a residual MLP shared by the voices."""

    def __init__(self, n_embd: int, vocab_size: int, hidden: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.voice = nn.Embedding(N_VOICES, n_embd)
        self.chosen = nn.ModuleList(nn.Embedding(vocab_size, n_embd) for _ in range(N_VOICES - 1))
        self.layers = nn.ModuleList(ResidualMLP(n_embd, hidden, dropout) for _ in range(n_layers))
        self.ln = nn.LayerNorm(n_embd)
        self.out = nn.Linear(n_embd, vocab_size)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.out(self.ln(x))

    def forward(self, h: torch.Tensor, chord: torch.Tensor) -> torch.Tensor:
        """h (B, T, C), chord (B, T, 4) tokens of the step (teacher forcing) -> logits (B, T, 4, vocab)."""
        e = [emb(chord[..., u]) for u, emb in enumerate(self.chosen)]  # 3 x (B, T, C)
        zero = torch.zeros_like(e[0])
        cum = torch.stack([zero, e[0], e[0] + e[1], e[0] + e[1] + e[2]], dim=2)  # (B, T, 4, C)
        x = h.unsqueeze(2) + cum + self.voice.weight  # (B, T, 4, C)
        return self._logits(x)

    def voice_logits(self, h: torch.Tensor, voice: int, chosen_sum: torch.Tensor) -> torch.Tensor:
        """Live path: h (B, C), chosen_sum (B, C) = sum of the chosen-voice embeddings -> (B, vocab)."""
        return self._logits(h + chosen_sum + self.voice.weight[voice])

    def embed_chosen(self, voice: int, token: torch.Tensor) -> torch.Tensor:
        """Embedding of the token chosen for ``voice`` (0..2), (B,) -> (B, C)."""
        return self.chosen[voice](token)


class ChoraleNet(nn.Module):
    """Causal in raster order: h_t = Transformer(chords < t), then S, A, T, B of step t one after another."""

    def __init__(self, config: ChoraleConfig) -> None:
        super().__init__()
        self.config = config
        self.gpt = GPT(config.gpt_config())
        self.head = VoiceHead(config.n_embd, config.vocab_size, config.head_hidden, config.head_layers,
                              config.dropout)

    def num_params(self) -> int:
        # the GPT's tied LM head is part of wte; it is not used here
        return sum(p.numel() for p in self.parameters())

    @staticmethod
    def _extra(prev: torch.Tensor, beat_pos: torch.Tensor) -> torch.Tensor:
        return torch.cat([prev[..., 1:], beat_pos.unsqueeze(-1)], dim=-1)  # (B, T, 4)

    def forward(self, prev: torch.Tensor, beat_pos: torch.Tensor, targets: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """prev (B, T, 4) chords of steps t-1, beat_pos (B, T), targets (B, T, 4) with -1 = padding.

        Returns logits (B, T, 4, vocab) and the mean NLL per (non-padding) token.
        """
        h = self.gpt.hidden(prev[..., 0], self._extra(prev, beat_pos))  # (B, T, C)
        logits = self.head(h, targets.clamp(min=0))
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizer(self, weight_decay: float, lr: float, betas: tuple[float, float] = (0.9, 0.95),
                            fused: bool = False) -> torch.optim.AdamW:
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                  {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas, fused=fused)

    # --- incremental decoding -------------------------------------------------------------------------
    def new_cache(self, batch: int = 1) -> KVCache:
        return self.gpt.new_cache(batch)

    def context(self, prev_chord: torch.Tensor, beat_pos: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Append one step token (chord of step t-1 (B, 4), beat position of step t (B,)) -> h_t (B, C)."""
        prev = prev_chord.unsqueeze(1)  # (B, 1, 4)
        return self.gpt.step_hidden(prev[..., 0], cache, self._extra(prev, beat_pos.unsqueeze(1)))[:, -1]


# --- constraints and sampling: small pure functions on logits ---------------------------------------------
def range_mask(vocab_size: int, first_pitch_token: int, pitch_lo: int, lo: int, hi: int) -> torch.Tensor:
    """(vocab,) bool: rest and the pitches lo..hi allowed; BOS never."""
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[first_pitch_token - 1] = True  # rest
    a = max(first_pitch_token, first_pitch_token + lo - pitch_lo)
    b = min(vocab_size - 1, first_pitch_token + hi - pitch_lo)
    mask[a : b + 1] = True
    return mask


def pitch_class_mask(vocab_size: int, first_pitch_token: int, pitch_lo: int,
                     pitch_classes: frozenset[int]) -> torch.Tensor:
    """(vocab,) bool: rest and the pitches whose pitch class is in ``pitch_classes`` (key lock)."""
    tokens = torch.arange(vocab_size)
    pcs = (tokens - first_pitch_token + pitch_lo) % 12
    allowed = torch.tensor([int(pc) in pitch_classes for pc in pcs.tolist()])
    allowed[:first_pitch_token] = False
    allowed[first_pitch_token - 1] = True
    return allowed


def choose_tokens(logits: torch.Tensor, mask: torch.Tensor, *, sample: bool, temperature: float,
                  generator: torch.Generator) -> torch.Tensor:
    """logits (B, V), mask (V,) or (B, V) -> tokens (B,): argmax, or a draw at ``temperature`` (seeded)."""
    masked = logits.float().masked_fill(~mask, float("-inf"))
    if not sample or temperature <= 0:
        return masked.argmax(dim=-1)
    probs = torch.softmax(masked / temperature, dim=-1)
    cdf = probs.cumsum(dim=-1)  # (B, V)
    r = torch.rand(cdf.shape[0], 1, generator=generator) * cdf[:, -1:]
    idx = torch.searchsorted(cdf, r, right=True).squeeze(-1)  # a zero-probability token is never first > r
    return idx.clamp(max=logits.shape[-1] - 1)


def voice_leading_mask(token_pitch: torch.Tensor, prev: torch.Tensor, chosen: torch.Tensor, voice: int, *,
                       parallels: bool, crossing: bool) -> torch.Tensor:
    """(B, V) bool: tokens for ``voice`` that make no parallel fifth/octave and no crossing.

    token_pitch (V,) MIDI pitch per token (-1 = rest/BOS); prev (B, 4) pitches of the previous step;
    chosen (B, >= voice) pitches already chosen this step for the voices above. Rests are always allowed.
    """
    p = token_pitch.unsqueeze(0)  # (1, V)
    allowed = torch.ones(prev.shape[0], token_pitch.shape[0], dtype=torch.bool)
    pv0 = prev[:, voice : voice + 1]  # (B, 1)
    if parallels:
        for u in range(voice):
            pu0, pu1 = prev[:, u : u + 1], chosen[:, u : u + 1]
            sounding = (pu0 >= 0) & (pu1 >= 0) & (pv0 >= 0) & (p >= 0)
            moved = (pu1 != pu0) & (p != pv0) & (torch.sign(pu1 - pu0) == torch.sign(p - pv0))
            iv0 = (pu0 - pv0).abs() % 12
            same = iv0 == (pu1 - p).abs() % 12
            allowed &= ~(sounding & moved & same & ((iv0 == 0) | (iv0 == 7)))
    if crossing and voice > 0:
        above = chosen[:, voice - 1 : voice]
        allowed &= ~((above >= 0) & (p > above))
    return allowed


def combine_masks(base: torch.Tensor, rules: torch.Tensor, token_pitch: torch.Tensor) -> torch.Tensor:
    """base (V,) & rules (B, V), except rows where the rules leave no pitch: those keep ``base`` alone."""
    both = base & rules
    has_pitch = (both & (token_pitch >= 0)).any(dim=-1, keepdim=True)  # (B, 1)
    return torch.where(has_pitch, both, base.expand_as(both))


def forbidden_pitches(prev: list[int], chosen: list[int], voice: int, lo: int, hi: int, *, parallels: bool,
                      crossing: bool) -> list[int]:
    """Pitches lo..hi that ``voice_leading_mask`` forbids, for one chord (plain ints, the fast live path)."""
    pv0 = prev[voice]
    out = []
    for p in range(lo, hi + 1):
        bad = crossing and voice > 0 and chosen[voice - 1] >= 0 and p > chosen[voice - 1]
        if parallels and not bad and pv0 >= 0 and p != pv0:
            for u in range(voice):
                pu0, pu1 = prev[u], chosen[u]
                if pu0 < 0 or pu1 < 0 or pu1 == pu0 or (pu1 > pu0) != (p > pv0):
                    continue
                iv0 = abs(pu0 - pv0) % 12
                if iv0 in (0, 7) and abs(pu1 - p) % 12 == iv0:
                    bad = True
                    break
        if bad:
            out.append(p)
    return out
