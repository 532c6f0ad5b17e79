"""The chord networks for training: the live GRU over slots (features + the previous chord) -> the slot's chord,
played in numpy by models/chords/stepper.py; and the offline reader, a bidirectional GRU over a whole melody,
read in numpy by models/chords/reader.py."""

from __future__ import annotations

import torch
from torch import nn

from models.chords.reader import ReaderConfig
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


class ReaderNet(nn.Module):
    """The offline reader: the melody's look-ahead features in both directions -> each slot's chord."""

    def __init__(self, config: ReaderConfig) -> None:
        super().__init__()
        self.config = config
        self.gru = nn.GRU(config.n_features, config.n_hidden, num_layers=config.n_layer, batch_first=True,
                          bidirectional=True, dropout=config.dropout if config.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * config.n_hidden, config.n_chords)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, S, F), lengths (B,) slots of each row (the rest padding) -> (B, S, n_chords) logits. With
        `lengths` the backward pass starts at each row's own end, as it does over a whole song."""
        if lengths is None:
            h, _ = self.gru(x)  # (B, S, 2H)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=x.size(1))
        return self.head(self.drop(h))
