"""Constrained decoding as small pure functions on logits: grammar, key lock, pitch range, length, density,
top-p.

Every mask is a boolean tensor over the vocabulary (True = allowed) and is applied with ``apply_mask``;
``MaskTables`` holds the per-vocabulary tables they are built from, computed once. Nothing here keeps
state between calls: the grammar state is the ``StreamDecoder`` that also turns tokens into notes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

from models.tokenizer import StreamDecoder, Vocab

MINOR_PCS = frozenset({0, 2, 3, 5, 7, 8, 10, 9, 11})  # natural minor plus the raised 6th and 7th
MAJOR_PCS = frozenset({0, 2, 4, 5, 7, 9, 11})


def scale_pcs(key: tuple[int, str]) -> frozenset[int]:
    """Pitch classes that count as in the key (minor allows the raised 6th and 7th)."""
    tonic, mode = key
    return frozenset((tonic + pc) % 12 for pc in (MINOR_PCS if mode == "minor" else MAJOR_PCS))


class MaskTables:
    """Per-vocabulary boolean tables: one mask per token kind, the pitch of every pitch token."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self.size = vocab.size
        self.kind: dict[str, torch.Tensor] = {}
        for name, r in vocab.blocks.items():
            m = torch.zeros(vocab.size, dtype=torch.bool)
            m[r.start : r.stop] = True
            self.kind[name] = m
        for name, tok in (("pad", vocab.pad), ("eos", vocab.eos), ("bar", vocab.bar)):
            m = torch.zeros(vocab.size, dtype=torch.bool)
            m[tok] = True
            self.kind[name] = m
        self._union: dict[tuple[str, ...], torch.Tensor] = {}
        self.pitches = torch.arange(128)
        # density_bias's direction: +1 on POS, -1 on BAR and EOS (adding bias * this is exact: factors are 0/±1)
        self.density_dir = torch.zeros(vocab.size)
        self.density_dir[vocab.block("pos").start : vocab.block("pos").stop] = 1.0
        self.density_dir[vocab.bar] = -1.0
        self.density_dir[vocab.eos] = -1.0

    def union(self, kinds: tuple[str, ...]) -> torch.Tensor:
        if kinds not in self._union:
            m = torch.zeros(self.size, dtype=torch.bool)
            for k in kinds:
                m |= self.kind[k]
            self._union[kinds] = m
        return self._union[kinds]


MAX_CHORD_NOTES = 8


def grammar_mask(tables: MaskTables, state: StreamDecoder, min_pos: int = 0,
                 pitch_ok: torch.Tensor | None = None, max_chord: int = MAX_CHORD_NOTES) -> torch.Tensor:
    """Tokens that keep the sequence well formed after what ``state`` has read.

    Positions only move forward within a bar (and not before ``min_pos``), chord tones rise in pitch (at
    most ``max_chord`` notes at one onset: 1 keeps a single line), a velocity is only allowed where a pitch can
    still follow it.
    ``pitch_ok`` (a ``pitch_mask``) is taken into account for that last rule.
    """
    expected = state.expected()
    mask = tables.union(expected).clone()
    v = tables.vocab
    if "pos" in expected:
        pos = v.block("pos")
        first = pos.start + max(state.pos + 1, min_pos)
        mask[pos.start : first] = False
        mask[pos.start + state.bar_positions : pos.stop] = False
    pitch, vel = v.block("pitch"), v.block("vel")
    if state.last_kind == "dur" and state.chord_size >= max_chord:
        mask[pitch.start : pitch.stop] = False
        mask[vel.start : vel.stop] = False
    if "pitch" in expected and state.pitch >= 0:
        mask[pitch.start : pitch.start + state.pitch + 1] = False
    if "vel" in expected:
        # a velocity must be followable by a pitch: above the last chord tone (-1 after POS), inside the locks
        higher = tables.pitches > state.pitch
        if pitch_ok is not None:
            higher &= pitch_ok[pitch.start : pitch.stop]
        if not bool(higher.any()):
            mask[vel.start : vel.stop] = False
    return mask


def pitch_mask(tables: MaskTables, allowed_pcs: Iterable[int] | None = None,
               pitch_range: tuple[int, int] | None = None) -> torch.Tensor:
    """Key/scale lock and pitch range: pitch tokens outside them are masked; every other token passes."""
    mask = torch.ones(tables.size, dtype=torch.bool)
    r = tables.vocab.block("pitch")
    ok = torch.ones(128, dtype=torch.bool)
    if allowed_pcs is not None:
        pcs = {int(p) % 12 for p in allowed_pcs}
        ok &= torch.tensor([p % 12 in pcs for p in range(128)])
    if pitch_range is not None:
        lo, hi = pitch_range
        ok &= (torch.arange(128) >= lo) & (torch.arange(128) <= hi)
    mask[r.start : r.stop] = ok
    return mask


def onset_limit_mask(tables: MaskTables, state: StreamDecoder, end_step: int) -> torch.Tensor:
    """Masks the positions whose onset would fall at or after ``end_step`` (the answer's end)."""
    mask = torch.ones(tables.size, dtype=torch.bool)
    pos = tables.vocab.block("pos")
    bar_start = max(0, state.bar) * state.bar_positions
    last_ok = end_step - bar_start  # positions < last_ok are allowed
    mask[pos.start + max(0, last_ok) : pos.stop] = False
    return mask


def anchor_mask(tables: MaskTables, state: StreamDecoder, start_step: int) -> torch.Tensor:
    """Before the answer's first note: no onset but exactly ``start_step`` (bar lines may pass on the way)."""
    mask = torch.ones(tables.size, dtype=torch.bool)
    v = tables.vocab
    pos = v.block("pos")
    bar_start = max(0, state.bar) * state.bar_positions
    mask[pos.start : pos.stop] = False
    if bar_start <= start_step < bar_start + state.bar_positions:
        mask[pos.start + start_step - bar_start] = True
        mask[v.bar] = False  # the answer's bar: its first note comes before the bar may close
        mask[v.eos] = False
    return mask


def fill_rules(bar: int, answer_bar: int, last_bar: int, last_note_bar: int) -> tuple[bool, bool]:
    """(no EOS, no BAR) for an answer that must fill its bars: ``bar`` is the decoder's, ``last_note_bar`` the
    bar of the answer's latest note (``answer_bar - 1`` before its first).

    No EOS before the answer's last bar; the last bar closes (BAR or EOS end the answer there) only after
    a note in it; an answer bar may close silent, but not a second one in a row (a rest, not a gap).
    """
    silent = last_note_bar < bar
    close_last = bar >= last_bar and silent
    return bar < last_bar or close_last, close_last or (silent and bar > answer_bar and last_note_bar < bar - 1)


def fill_mask(tables: MaskTables, rules: tuple[bool, bool]) -> torch.Tensor:
    """The ``fill_rules`` as a mask: EOS and/or BAR masked, everything else passes."""
    mask = torch.ones(tables.size, dtype=torch.bool)
    no_eos, no_bar = rules
    if no_eos:
        mask[tables.vocab.eos] = False
    if no_bar:
        mask[tables.vocab.bar] = False
    return mask


def apply_mask(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """logits with the masked-out tokens at -inf (a new tensor)."""
    return logits.masked_fill(~mask, -math.inf)


def density_bias(tables: MaskTables, logits: torch.Tensor, bias: float) -> torch.Tensor:
    """Steer notes per bar: +bias on starting a new onset (POS), -bias on closing the bar (BAR, EOS)."""
    if bias == 0.0:
        return logits
    return torch.add(logits, tables.density_dir.to(logits.dtype), alpha=bias)


def density_error_bias(target_per_bar: float, notes_so_far: int, bars_elapsed: float, gain: float = 2.0,
                       limit: float = 6.0) -> float:
    """The bias that pulls the answer's note count towards ``target_per_bar`` (a clipped P-controller).

    Firm enough that a sparse answer rests (closes bars early) rather than crams: with ``fill_rules`` an
    answer cannot stop early, so this bias is what keeps it as sparse as asked.
    """
    error = target_per_bar * bars_elapsed - notes_so_far
    return max(-limit, min(limit, gain * error))


def sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """One token from (V,) logits: temperature, then nucleus (top-p) sampling; temperature 0 is argmax."""
    if temperature <= 0.0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < top_p  # always keeps the most likely token
        sorted_p = sorted_p * keep
        choice = torch.multinomial(sorted_p, 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))


def sample_allowed(logits: torch.Tensor, allowed: np.ndarray, temperature: float, top_p: float,
                   generator: torch.Generator) -> int:
    """``sample`` over the ``allowed`` token ids only (ascending): the same distribution as masking the rest.

    Temperature, top-p and the draw work on that small set in numpy (a few microseconds where torch's per-op
    cost dominates on vectors this short); the draw inverts the cumulative distribution at a uniform number
    from ``generator``, so a seed gives the same tokens every time. Temperature 0 is argmax (lowest id on ties).
    """
    return sample_values(logits.numpy()[allowed], allowed, temperature, top_p, generator)


def sample_values(z: np.ndarray, allowed: np.ndarray, temperature: float, top_p: float,
                  generator: torch.Generator) -> int:
    """``sample_allowed`` from the logits ``z`` of the ``allowed`` ids already picked out (or reshaped)."""
    z = z.astype(np.float64)
    if temperature <= 0.0:
        return int(allowed[int(np.argmax(z))])
    p = np.exp((z - z.max()) / temperature)  # unnormalized softmax
    order = None
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        p = p[order]
        cum = np.cumsum(p)
        kept = int(np.count_nonzero(cum - p < top_p * cum[-1]))  # a prefix; always keeps the most likely token
        cum = cum[:kept]
    else:
        cum = np.cumsum(p)
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    j = min(int(np.searchsorted(cum, u * cum[-1], side="right")), len(cum) - 1)
    return int(allowed[j if order is None else int(order[j])])
