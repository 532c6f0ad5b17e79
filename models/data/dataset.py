"""Tokenized pieces in flat arrays; training windows that start on a bar line, transposed at random."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.data.pieces import Piece
from models.tokenizer import Tokenizer, transpose_key_token

HEADER_TOKENS = 3  # STYLE METER KEY
TRANSPOSE_RANGE = (-6, 5)  # semitones, inclusive; every key is reachable from every other


@dataclass
class TokenSet:
    """The body tokens (after the header, EOS last) of many pieces, flat, with per-piece indexes."""

    tokens: np.ndarray  # (N,) int16: body tokens of all pieces, back to back
    offsets: np.ndarray  # (P + 1,) int64: piece p's body is tokens[offsets[p]:offsets[p + 1]]
    headers: np.ndarray  # (P, 3) int16
    bars: np.ndarray  # (B,) int64: flat indexes of every BAR token
    bar_offsets: np.ndarray  # (P + 1,) int64: piece p's bars are bars[bar_offsets[p]:bar_offsets[p + 1]]
    pitch_range: np.ndarray  # (P, 2) int16: lowest and highest pitch of the piece
    ids: list[str]
    styles: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def body(self, p: int) -> np.ndarray:
        return self.tokens[self.offsets[p] : self.offsets[p + 1]]

    def piece_tokens(self, p: int) -> np.ndarray:
        """Header + body of piece ``p``."""
        return np.concatenate([self.headers[p], self.body(p)])


def tokenize_pieces(pieces: Sequence[Piece], tokenizer: Tokenizer, max_bars: int = 512) -> TokenSet:
    """Tokenize pieces (each cut to ``max_bars`` bars); pieces with no notes on the grid are left out."""
    v = tokenizer.vocab
    bodies: list[np.ndarray] = []
    headers, ranges, ids, styles = [], [], [], []
    for piece in pieces:
        body = tokenizer.encode_notes(piece.notes, piece.meter)
        bar_count = 0
        for i, t in enumerate(body):
            if t == v.bar:
                bar_count += 1
                if bar_count > max_bars:
                    body = body[:i]
                    break
        if not any(t >= v.block("pitch").start and t < v.block("pitch").stop for t in body):
            continue
        bodies.append(np.array(body + [v.eos], dtype=np.int16))
        headers.append(tokenizer.header(piece.style, piece.meter, piece.key))
        pitches = piece.notes[:, 2]
        ranges.append((int(pitches.min()), int(pitches.max())))
        ids.append(piece.piece_id)
        styles.append(piece.style)
    offsets = np.zeros(len(bodies) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in bodies])
    tokens = np.concatenate(bodies) if bodies else np.zeros(0, dtype=np.int16)
    bars = np.flatnonzero(tokens == v.bar).astype(np.int64)
    bar_offsets = np.searchsorted(bars, offsets).astype(np.int64)
    return TokenSet(tokens, offsets, np.array(headers, dtype=np.int16).reshape(-1, HEADER_TOKENS), bars,
                    bar_offsets, np.array(ranges, dtype=np.int16).reshape(-1, 2), ids, styles)


class WindowSampler:
    """Random training windows: header + body from a random bar line, transposed by a random interval.

    Pieces are drawn in proportion to their length. Returns (x, y) int64 arrays of shape (B, T) where
    ``y`` is ``x`` shifted by one and -1 marks padding (ignored by the loss).
    """

    def __init__(self, data: TokenSet, tokenizer: Tokenizer, block_size: int, transpose: bool = True) -> None:
        if len(data) == 0:
            raise ValueError("no pieces to train on: the data set is empty after parsing")
        self.data = data
        self.tok = tokenizer
        self.block_size = block_size
        self.transpose = transpose
        lengths = np.diff(data.offsets).astype(np.float64)
        self.weights = lengths / lengths.sum()
        v = tokenizer.vocab
        self._pitch = (v.block("pitch").start, v.block("pitch").stop)

    def window(self, rng: np.random.Generator, p: int) -> np.ndarray:
        d = self.data
        T = self.block_size + 1
        bars = d.bars[d.bar_offsets[p] : d.bar_offsets[p + 1]]
        start = int(bars[rng.integers(len(bars))]) if len(bars) else int(d.offsets[p])
        body = d.tokens[start : min(int(d.offsets[p + 1]), start + T - HEADER_TOKENS)]
        seq = np.concatenate([d.headers[p], body]).astype(np.int64)
        if self.transpose:
            lo, hi = int(d.pitch_range[p, 0]), int(d.pitch_range[p, 1])
            shift = int(rng.integers(max(TRANSPOSE_RANGE[0], -lo), min(TRANSPOSE_RANGE[1], 127 - hi) + 1))
            if shift:
                is_pitch = (seq >= self._pitch[0]) & (seq < self._pitch[1])
                seq[is_pitch] += shift
                seq[2] = transpose_key_token(self.tok.vocab, int(seq[2]), shift)
        return seq

    def batch(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        T = self.block_size
        x = np.full((batch_size, T), self.tok.vocab.pad, dtype=np.int64)
        y = np.full((batch_size, T), -1, dtype=np.int64)
        pieces = rng.choice(len(self.data), size=batch_size, p=self.weights)
        for b, p in enumerate(pieces):
            seq = self.window(rng, int(p))
            n = len(seq) - 1
            x[b, :n] = seq[:-1]
            y[b, :n] = seq[1:]
        return x, y


def eval_windows(data: TokenSet, block_size: int, max_pieces: int | None = None,
                 ) -> list[tuple[int, np.ndarray, int]]:
    """Windows that score every body token of each piece once: (piece, tokens, first scored index).

    Each window is the header plus body tokens from a bar line; the tokens before ``first scored index``
    are context already scored by the previous window (about half a window of it where the piece is long).
    """
    out = []
    n_pieces = len(data) if max_pieces is None else min(len(data), max_pieces)
    room = block_size - HEADER_TOKENS + 1
    for p in range(n_pieces):
        lo, hi = int(data.offsets[p]), int(data.offsets[p + 1])
        bars = data.bars[data.bar_offsets[p] : data.bar_offsets[p + 1]]
        scored = lo  # next body token to score
        while scored < hi:
            # start at the latest bar line that leaves at least half a window of new tokens
            start = lo
            if scored > lo:
                cands = bars[(bars <= scored) & (bars >= scored - room // 2)]
                start = int(cands[0]) if len(cands) else scored
            end = min(hi, start + room)
            if end <= scored:  # a single bar longer than the window: no context
                start, end = scored, min(hi, scored + room)
            seq = np.concatenate([data.headers[p], data.tokens[start:end]]).astype(np.int64)
            out.append((p, seq, HEADER_TOKENS + scored - start))
            scored = end
    return out
