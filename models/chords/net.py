"""The chord network for training: a GRU over slots (features + the previous chord) -> the slot's chord. Playing
uses its weights in numpy (models/chords/stepper.py)."""

from __future__ import annotations

import torch
from torch import nn

from models.chords.stepper import ChordConfig


class ChordNet(nn.Module):
    def __init__(self, config: ChordConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.n_chords + 1, config.n_embd)  # + "none yet"
        self.gru = nn.GRU(config.n_features + config.n_embd, config.n_hidden, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(config.n_hidden, config.n_chords)

    def forward(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """x (B, S, F) slot features, prev (B, S) previous chord -> (B, S, n_chords) logits."""
        h, _ = self.gru(torch.cat([x, self.embed(prev)], dim=-1))  # (B, S, H)
        return self.head(self.drop(h))
