"""The phrase VAE (MusicVAE-style): bi-GRU encoder -> latent z -> autoregressive GRU decoder over 16th steps; no I/O.

A phrase is a melody on a 16th grid, one token per step, in named contiguous blocks:
``REST`` (0, nothing sounds), ``HOLD`` (1, the previous note goes on), ``NOTE_ON`` (2..129, pitch 0..127
starts). The decoder reads the previous token (``START`` before the first step), the latent and the step's
position, so one model decodes phrases of any length up to ``max_steps`` (2 and 4 bars in 4/4, 3/4, 6/8...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.config import SavedConfig

REST = 0
HOLD = 1
NOTE_OFFSET = 2  # NOTE_ON(pitch) = NOTE_OFFSET + pitch
N_PITCHES = 128
N_CLASSES = NOTE_OFFSET + N_PITCHES  # 130
START = N_CLASSES  # decoder input before the first step (never a target)


def token_name(token: int) -> str:
    """A printable name for a step token (``REST``, ``HOLD``, ``ON60``)."""
    if token == REST:
        return "REST"
    if token == HOLD:
        return "HOLD"
    if token == START:
        return "START"
    return f"ON{token - NOTE_OFFSET}"


@dataclass
class VAEConfig(SavedConfig):
    """Model shape and sizes; stored in every checkpoint (``to_dict``) and rebuilt with ``from_dict``."""

    n_classes: int = N_CLASSES
    max_steps: int = 64  # longest phrase in 16ths (4 bars of 4/4)
    n_embd: int = 128  # token embedding, encoder and decoder
    pos_embd: int = 32  # decoder's position-in-phrase embedding
    enc_hidden: int = 256  # per direction
    enc_layers: int = 2
    dec_hidden: int = 512
    dec_layers: int = 2
    z_dim: int = 256
    dropout: float = 0.1


def grammar_mask(prev: torch.Tensor, n_classes: int = N_CLASSES) -> torch.Tensor:
    """(B,) previous tokens -> (B, C) bool of allowed next tokens: HOLD only continues a sounding note."""
    allowed = torch.ones(prev.shape[0], n_classes, dtype=torch.bool, device=prev.device)
    allowed[:, HOLD] = (prev >= NOTE_OFFSET) & (prev < n_classes) | (prev == HOLD)
    return allowed


def pitch_mask(allowed_pitch_classes: set[int] | None, n_classes: int = N_CLASSES) -> torch.Tensor | None:
    """(C,) bool: REST, HOLD and note-ons whose pitch class is allowed (key lock); None allows all."""
    if allowed_pitch_classes is None:
        return None
    mask = torch.zeros(n_classes, dtype=torch.bool)
    mask[REST] = mask[HOLD] = True
    for pitch in range(n_classes - NOTE_OFFSET):
        if pitch % 12 in allowed_pitch_classes:
            mask[NOTE_OFFSET + pitch] = True
    return mask


class PhraseVAENet(nn.Module):
    """Encoder, latent heads and decoder; ``forward`` is the teacher-forced training pass."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        c = self.config = config
        self.enc_tok = nn.Embedding(c.n_classes, c.n_embd)
        self.enc_pos = nn.Embedding(c.max_steps, c.n_embd)
        self.encoder = nn.GRU(c.n_embd, c.enc_hidden, c.enc_layers, batch_first=True, bidirectional=True,
                              dropout=c.dropout if c.enc_layers > 1 else 0.0)
        self.to_latent = nn.Linear(2 * c.enc_hidden, 2 * c.z_dim)  # -> (mu, logvar)
        self.z_to_h = nn.Linear(c.z_dim, c.dec_layers * c.dec_hidden)
        self.dec_tok = nn.Embedding(c.n_classes + 1, c.n_embd)  # + START
        self.dec_pos = nn.Embedding(c.max_steps, c.pos_embd)
        self.decoder = nn.GRU(c.n_embd + c.z_dim + c.pos_embd, c.dec_hidden, c.dec_layers, batch_first=True,
                              dropout=c.dropout if c.dec_layers > 1 else 0.0)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.dec_hidden, c.n_classes)

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) step tokens -> mu (B, Z), logvar (B, Z)."""
        T = tokens.shape[1]
        if T > self.config.max_steps:
            raise ValueError(f"phrase of {T} steps is longer than the model's {self.config.max_steps}")
        pos = torch.arange(T, device=tokens.device)
        x = self.drop(self.enc_tok(tokens) + self.enc_pos(pos))  # (B, T, E)
        _, h = self.encoder(x)  # (layers * 2, B, H)
        last = torch.cat([h[-2], h[-1]], dim=-1)  # last layer, both directions: (B, 2H)
        mu, logvar = self.to_latent(last).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 8.0)

    def initial_state(self, z: torch.Tensor) -> torch.Tensor:
        """(B, Z) -> decoder hidden state (layers, B, H)."""
        c = self.config
        h = torch.tanh(self.z_to_h(z))  # (B, layers * H)
        return h.view(z.shape[0], c.dec_layers, c.dec_hidden).transpose(0, 1).contiguous()

    def decoder_inputs(self, prev: torch.Tensor, z: torch.Tensor, start_step: int = 0) -> torch.Tensor:
        """(B, T) previous tokens, (B, Z) latent -> (B, T, E + Z + P) decoder inputs."""
        B, T = prev.shape
        pos = torch.arange(start_step, start_step + T, device=prev.device)
        return torch.cat([self.drop(self.dec_tok(prev)), z[:, None, :].expand(B, T, z.shape[1]),
                          self.dec_pos(pos)[None].expand(B, T, -1)], dim=-1)

    def decode_teacher_forced(self, tokens: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(B, T) targets, (B, Z) -> logits (B, T, C) with the true previous token at every step."""
        start = torch.full_like(tokens[:, :1], START)
        prev = torch.cat([start, tokens[:, :-1]], dim=1)
        out, _ = self.decoder(self.decoder_inputs(prev, z), self.initial_state(z))  # (B, T, H)
        return self.head(self.drop(out))

    def forward(self, tokens: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T) -> (logits (B, T, C), mu (B, Z), logvar (B, Z)); z drawn from q(z|x) when ``sample``."""
        mu, logvar = self.encode(tokens)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return self.decode_teacher_forced(tokens, z), mu, logvar

    def _step_tables(self, z: torch.Tensor, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """First decoder layer's input gates split by source: per token (C+1, 3H) and per step (B, T, 3H).

        The latent and the position are fixed for a phrase, so their share of the gates is computed once;
        the previous token's share is a table lookup. This makes a CPU step a handful of small ops.
        """
        c = self.config
        w = self.decoder.weight_ih_l0  # (3H, E + Z + P)
        w_tok, w_z, w_pos = w.split([c.n_embd, c.z_dim, c.pos_embd], dim=1)
        tok_table = self.dec_tok.weight @ w_tok.T  # (C + 1, 3H)
        pos_part = self.dec_pos.weight[:n_steps] @ w_pos.T  # (T, 3H)
        const = (z @ w_z.T + self.decoder.bias_ih_l0)[:, None, :] + pos_part[None]  # (B, T, 3H)
        return tok_table, const

    @torch.no_grad()
    def generate(self, z: torch.Tensor, n_steps: int, temperature: float = 0.0,
                 generator: torch.Generator | None = None, allowed: torch.Tensor | None = None,
                 note_bias: torch.Tensor | float = 0.0) -> torch.Tensor:
        """(B, Z) -> (B, n_steps) tokens, one step at a time: greedy when temperature is 0, else sampled.

        ``allowed`` (C,) bool restricts the tokens (key lock); ``note_bias`` (B,) or a float is added to every
        note-on logit (density steering: above 0 more notes, below 0 fewer). Same maths as
        ``decode_teacher_forced`` (nn.GRU's gate order r, z, n), unrolled for speed.
        """
        c = self.config
        if n_steps > c.max_steps:
            raise ValueError(f"cannot decode {n_steps} steps: the model's phrases hold {c.max_steps}")
        B = z.shape[0]
        tok_table, const = self._step_tables(z, n_steps)
        h = list(self.initial_state(z).unbind(0))  # layers x (B, H)
        layers = [(getattr(self.decoder, f"weight_ih_l{i}"), getattr(self.decoder, f"weight_hh_l{i}"),
                   getattr(self.decoder, f"bias_ih_l{i}"), getattr(self.decoder, f"bias_hh_l{i}"))
                  for i in range(c.dec_layers)]
        # everything added to the logits that does not change over the phrase: key lock and density bias
        add = torch.zeros(B, c.n_classes, device=z.device)
        add[:, NOTE_OFFSET:] += torch.as_tensor(note_bias, dtype=add.dtype, device=z.device).reshape(-1, 1)
        if allowed is not None:
            add.masked_fill_(~allowed.to(z.device)[None], float("-inf"))
        minus_inf = torch.tensor(float("-inf"), device=z.device)
        prev = torch.full((B,), START, dtype=torch.long, device=z.device)
        out = torch.empty(B, n_steps, dtype=torch.long, device=z.device)
        for t in range(n_steps):
            gi = tok_table[prev] + const[:, t]  # (B, 3H)
            gh = F.linear(h[0], layers[0][1], layers[0][3])
            i_r, i_z, i_n = gi.chunk(3, dim=1)
            h_r, h_z, h_n = gh.chunk(3, dim=1)
            n = torch.tanh(i_n + torch.sigmoid(i_r + h_r) * h_n)
            h[0] = n + torch.sigmoid(i_z + h_z) * (h[0] - n)
            for i in range(1, c.dec_layers):
                h[i] = torch.gru_cell(h[i - 1], h[i], *layers[i])
            logits = self.head(h[-1]).float() + add  # (B, C)
            # HOLD only continues a sounding note
            hold_ok = (prev >= NOTE_OFFSET) & (prev < c.n_classes) | (prev == HOLD)
            logits[:, HOLD] = torch.where(hold_ok, logits[:, HOLD], minus_inf)
            if temperature <= 0:
                prev = logits.argmax(dim=-1)
            else:
                probs = F.softmax(logits / temperature, dim=-1)
                prev = torch.multinomial(probs, 1, generator=generator)[:, 0]
            out[:, t] = prev
        return out


def kl_per_phrase(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) in nats, (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)
