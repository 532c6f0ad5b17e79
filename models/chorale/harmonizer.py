"""The live chorale harmonizer: soprano in, alto/tenor/bass out, one 16th step at a time (plus CLI entry points)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import build_model, from_config, load_checkpoint
from models.chorale.jsb import JsbVocab
from models.chorale.net import (
    ChoraleConfig,
    ChoraleNet,
    choose_tokens,
    combine_masks,
    forbidden_pitches,
    pitch_class_mask,
    range_mask,
    voice_leading_mask,
)
from models.chorale.register import fold, max_drop, register
from models.chorale.train import KIND, SHIPPED_CHECKPOINT, train_main

__all__ = ["Harmonizer", "train_main", "SHIPPED_CHECKPOINT"]

Voices = tuple[int | None, int | None, int | None]
# what a precomputed chord table depends on besides the context: temperature, sample, key lock, the two rules
TableKey = tuple[float, bool, frozenset[int] | None, bool, bool]


@dataclass(slots=True)
class _Chords:
    """The coming step's chords being sampled for every soprano it can be given (one row each), voice by voice.

    Work stopped part-way is kept: the one-soprano path of a note that came meanwhile takes its row from here.
    """

    key: TableKey
    voice: int  # the next voice to choose (1 alto .. 3 bass); 4 once every row is complete
    logits: torch.Tensor | None  # (n_s, vocab) of that voice, once computed
    acc: torch.Tensor  # (n_s, C): embeddings of the voices chosen so far (the head's input)
    pitches: torch.Tensor  # (n_s, 4) model-space pitches chosen so far, -1 = rest or not yet
    tokens: list[torch.Tensor]  # (n_s,) per voice chosen below the soprano
    table: tuple[list[list[int]], list[list[int]]] | None = None  # tokens, pitches as lists once complete


class Harmonizer:
    """Forced-soprano decoding of the chorale model with a KV cache.

    Call ``step(soprano)`` once per 16th step (None = rest): it returns (alto, tenor, bass) at once; then call
    ``finish_step()`` after sending, which feeds the finished chord to the Transformer and samples the next
    step's chord for every soprano it can be given, so ``step`` is a table lookup (``step`` calls
    ``finish_step`` itself if the caller did not). A setting changed between the two (temperature, key lock,
    rules, greedy vs sampled) makes that table stale: call ``prepare()`` when it changes to rebuild it before
    the note comes; a ``step`` on a stale table runs the voice head for the one soprano instead.
    """

    def __init__(self, net: ChoraleNet, vocab: JsbVocab, voice_ranges: Sequence[Sequence[int]],
                 meta: dict[str, Any] | None = None, *, temperature: float = 1.0,
                 avoid_parallels: bool = True, avoid_crossing: bool = True, int8_head: bool = False) -> None:
        self.net = net.eval()
        # a network shared with another Harmonizer may already carry the int8 head
        self.int8_head = (int8_head and _quantize_head(net)) or _head_is_int8(net)
        self.vocab = vocab
        self.meta = meta or {}
        self.voice_ranges = [(int(lo), int(hi)) for lo, hi in voice_ranges]
        self.max_drop_semitones = max_drop(self.voice_ranges[3])  # how far a low melody takes the harmony down
        self.temperature = temperature
        # voice-leading rules as logit masks (dropped for a voice when they would leave it no pitch)
        self.avoid_parallels = avoid_parallels
        self.avoid_crossing = avoid_crossing
        tokens = torch.arange(vocab.size)
        self._token_pitch = torch.where(tokens >= vocab.FIRST_PITCH, tokens - vocab.FIRST_PITCH + vocab.pitch_lo, -1)
        self._range_masks = [range_mask(vocab.size, vocab.FIRST_PITCH, vocab.pitch_lo, lo, hi)
                             for lo, hi in self.voice_ranges]
        # every soprano token the live path can force: rest + the soprano range (melodies are folded into it)
        self._soprano_tokens = torch.nonzero(self._range_masks[0]).squeeze(-1)  # (n_s,)
        self._soprano_row = {int(t): i for i, t in enumerate(self._soprano_tokens)}
        self._masks = list(self._range_masks)
        self.key_lock: frozenset[int] | None = None
        self._sample = True  # the mode of the last step: the next table is built for it
        self._chords: _Chords | None = None
        with torch.inference_mode():
            self._soprano_acc = self.net.head.embed_chosen(0, self._soprano_tokens)  # (n_s, C), fixed
        self.reset(0)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, temperature: float = 1.0,
             avoid_parallels: bool = True, avoid_crossing: bool = True, int8_head: bool = True) -> Harmonizer:
        """Load a harmonizer checkpoint (default: the shipped one); raises CheckpointFileError.

        ``int8_head`` quantizes the voice head's linear layers (dynamic int8) for the live path: its weights
        then fit the CPU cache, which cuts the note-to-harmony time by about a third (test NLL 0.3728 vs
        0.3724 in fp32). ``int8_head`` on the result says whether it took effect.
        """
        path = Path(path) if path is not None else SHIPPED_CHECKPOINT
        state, meta = load_checkpoint(path, kind=KIND)
        net = build_model(path, lambda: ChoraleNet(ChoraleConfig.from_dict(meta["model_config"])), state)
        tok = meta["tokenizer_config"]
        return from_config(path, "tokenizer_config", lambda: cls(
            net, JsbVocab.from_dict(tok), tok["voice_ranges"], meta, temperature=temperature,
            avoid_parallels=avoid_parallels, avoid_crossing=avoid_crossing, int8_head=int8_head))

    # --- settings -----------------------------------------------------------------------------------------
    def set_key_lock(self, pitch_classes: Iterable[int] | None) -> None:
        """Allow only these pitch classes (0 = C) in the harmony voices; None switches the lock off."""
        if pitch_classes is None:
            self.key_lock = None
            self._masks = list(self._range_masks)
            return
        pcs = frozenset(int(pc) % 12 for pc in pitch_classes)
        if not pcs:
            raise ValueError("key lock needs at least one pitch class")
        self.key_lock = pcs
        key = pitch_class_mask(self.vocab.size, self.vocab.FIRST_PITCH, self.vocab.pitch_lo, pcs)
        self._masks = [m & key for m in self._range_masks]

    @property
    def soprano_range(self) -> tuple[int, int]:
        return self.voice_ranges[0]

    # --- decoding -------------------------------------------------------------------------------------------
    def reset(self, seed: int = 0, *, position_in_beat: int = 0) -> None:
        """Start a new piece: empty context, sampling seeded, next step at this 16th of the beat (0..3)."""
        self._generator = torch.Generator().manual_seed(seed)
        self._cache = self.net.new_cache(1)
        self._step_index = position_in_beat % 4
        self._pending: list[int] | None = None
        self._undo: tuple[torch.Tensor, torch.Tensor, list[int], int, int] | None = None  # see redo_step
        self._prev_pitches = [-1, -1, -1, -1]  # model space, -1 = rest
        self.octave_shift_semitones = 0  # added to the melody to bring it into the soprano range
        self.shift_changed = False  # True on the step where octave_shift_semitones changed (log it)
        bos = torch.full((1, 4), JsbVocab.BOS, dtype=torch.long)
        with torch.inference_mode():
            self._h = self.net.context(bos, torch.tensor([self._step_index % 4]), self._cache)
            self._prepare_step()

    def _table_key(self, sample: bool) -> TableKey:
        return (self.temperature, sample, self.key_lock, self.avoid_parallels, self.avoid_crossing)

    def _table_fresh(self, sample: bool) -> bool:
        chords = self._chords
        return chords is not None and chords.table is not None and chords.key == self._table_key(sample)

    def chords_ready(self) -> bool:
        """True when the coming ``step`` is a lookup: its chords are built, with the settings in force."""
        return self._pending is None and self._table_fresh(self._sample)

    def soprano_rows(self) -> list[int]:
        """The soprano of each row of the chord tables, in model space (-1 = a rest)."""
        return [self._pitch_of(int(tok)) for tok in self._soprano_tokens]

    def next_chords(self) -> list[list[int]] | None:
        """The coming step's chords, once built with the settings in force: per soprano row (`soprano_rows`), the
        model-space pitches of soprano, alto, tenor and bass (-1 = rest); None while they are not ready."""
        if not self.chords_ready():
            return None
        return self._chords.table[1]  # type: ignore[union-attr]

    def prepare(self, interrupted: Callable[[], bool] | None = None) -> bool:
        """Bring the coming step's chords up to date with the settings, if one changed since they were built.

        Call it when a setting changes (the left hand's chord or the key moved the key lock), not on the
        note: the next ``step`` is then a lookup again. ``interrupted`` is asked before each pass of the voice
        head; when it says True (a melody note is waiting) the work stops where it is: that note's ``step``
        finishes its own row from there (one soprano, so sooner than the whole table), and a later
        ``prepare`` goes on from there. Returns True when the chords are up to date (at once if nothing changed).
        """
        if self._pending is not None:
            return True  # finish_step builds the next table with the settings in force
        key = self._table_key(self._sample)
        if self._chords is None or self._chords.key != key:
            self._chords = self._new_chords(key)
        if self._chords.table is not None:
            return True
        with torch.inference_mode():
            return self._sample_rows(self._chords, interrupted)

    def _prepare_step(self, interrupted: Callable[[], bool] | None = None) -> bool:
        """The coming step's (alto, tenor, bass) for every soprano it can be given, before the note arrives.

        Three batched passes of the voice head (A | S, then T | S, A, then B | S, A, T; one row per soprano:
        the head is memory-bound on a CPU, so ~26 rows cost little more than one), with the same masks and
        voice-leading rules as the one-soprano path, sampled with the seeded generator. The alto's logits
        depend on the context only: they are kept for every later rebuild (and the one-soprano path).
        """
        n = len(self._soprano_tokens)
        self._alto_table = self.net.head.voice_logits(self._h.expand(n, -1), 1, self._soprano_acc)  # (n_s, vocab)
        self._chords = self._new_chords(self._table_key(self._sample))
        return self._sample_rows(self._chords, interrupted)

    def _new_chords(self, key: TableKey) -> _Chords:
        """Nothing chosen below the soprano yet (no work: the alto's logits are the context's)."""
        pitches = torch.full((len(self._soprano_tokens), 4), -1, dtype=torch.long)
        pitches[:, 0] = self._token_pitch[self._soprano_tokens]
        return _Chords(key, 1, self._alto_table, self._soprano_acc, pitches, [])

    def _sample_rows(self, chords: _Chords, interrupted: Callable[[], bool] | None) -> bool:
        """Go on choosing voices for every row; False if `interrupted` said so before a pass (kept as it is)."""
        head = self.net.head
        token_pitch = self._token_pitch
        prev = torch.tensor([self._prev_pitches]).expand(len(self._soprano_tokens), 4)
        while chords.voice <= 3:
            v = chords.voice
            if interrupted is not None and interrupted():
                return False
            if chords.logits is None:
                chords.logits = head.voice_logits(self._h, v, chords.acc)  # (n_s, vocab)
                continue  # asked again before the choice
            mask = self._masks[v]
            if self.avoid_parallels or self.avoid_crossing:
                mask = combine_masks(mask, voice_leading_mask(token_pitch, prev, chords.pitches, v,
                                                              parallels=self.avoid_parallels,
                                                              crossing=self.avoid_crossing), token_pitch)
            if v == 3:
                mask = self._sounding_bass(mask, self._soprano_tokens)
            tok = choose_tokens(chords.logits, mask, sample=chords.key[1], temperature=self.temperature,
                                generator=self._generator)
            chords.tokens.append(tok)
            chords.pitches[:, v] = token_pitch[tok]
            if v < 3:
                chords.acc = chords.acc + head.embed_chosen(v, tok)
            chords.voice, chords.logits = v + 1, None
        chords.table = (torch.stack(chords.tokens, dim=1).tolist(), chords.pitches.tolist())
        return True

    def _fold(self, pitch: int) -> int:
        shift = fold(pitch, self.octave_shift_semitones, self.soprano_range)
        self.shift_changed = shift != self.octave_shift_semitones
        self.octave_shift_semitones = shift
        return pitch + shift

    def step(self, soprano: int | None, *, sample: bool = True) -> Voices:
        """Advance one 16th step with the soprano forced (None = rest); return (alto, tenor, bass), None = rest.

        The model hears a melody outside the soprano range folded into it by whole octaves
        (`octave_shift_semitones`); the voices come back where a musician would put them (`_register`).
        """
        if self._pending is not None:
            self.finish_step()
        if soprano is not None and not 0 <= soprano <= 127:
            raise ValueError(f"soprano pitch {soprano} is not a MIDI note number (0..127)")
        undo = (self._h, self._alto_table, self._prev_pitches, self.octave_shift_semitones, self._cache.length)
        s_tok = self.vocab.encode(None if soprano is None else self._fold(soprano))
        if soprano is None:
            self.shift_changed = False
        chords, self._chords = self._chords, None
        self._sample = sample
        key = self._table_key(sample)
        if chords is None or chords.key != key:
            chords = self._new_chords(key)  # a setting changed since they were prepared: nothing of them holds
        row = self._soprano_row[s_tok]
        if chords.table is not None:  # the note-time path: a lookup
            chosen, pitches = [s_tok, *chords.table[0][row]], list(chords.table[1][row])
        else:
            chosen, pitches = self._sample_chord(chords, row, sample)
        self._pending = chosen
        self._prev_pitches = pitches
        self._undo = undo
        alto, tenor, bass = (self._register(self.vocab.decode(tok)) for tok in chosen[1:])
        return alto, tenor, bass

    def _register(self, pitch: int | None) -> int | None:
        """Where a voice sounds for the player's melody (model space -> MIDI): `register.register`."""
        return register(pitch, self.octave_shift_semitones, self.max_drop_semitones)

    def _sample_chord(self, chords: _Chords, row: int, sample: bool) -> tuple[list[int], list[int]]:
        """The rest of one soprano's chord from where the table's work stopped (a setting changed since it was
        built: from the alto on), with the voice head on that row alone: tokens and pitches."""
        head = self.net.head
        s_tok = int(self._soprano_tokens[row])
        chosen = [s_tok] + [int(tok[row]) for tok in chords.tokens]
        pitches = chords.pitches[row].tolist()
        acc = chords.acc[row : row + 1]
        logits = None if chords.logits is None else chords.logits[row : row + 1]  # (1, vocab)
        with torch.inference_mode():
            for v in range(chords.voice, 4):
                if logits is None:
                    logits = head.voice_logits(self._h, v, acc)  # (1, vocab)
                mask = self._masks[v]
                if self.avoid_parallels or self.avoid_crossing:
                    mask = self._rule_mask(mask, v, pitches)
                if v == 3:
                    mask = self._sounding_bass(mask, torch.tensor([s_tok]))
                tok = choose_tokens(logits, mask, sample=sample, temperature=self.temperature,
                                    generator=self._generator)
                chosen.append(int(tok))
                pitches[v] = self._pitch_of(int(tok))
                if v < 3:
                    acc = acc + head.embed_chosen(v, tok)
                logits = None
        return chosen, pitches

    def _sounding_bass(self, mask: torch.Tensor, soprano_tokens: torch.Tensor) -> torch.Tensor:
        """Under a sounding melody note the bass does not rest, so every melody note gets a chord (the model
        rests every voice at once on about 0.4 % of onsets otherwise); a row with no pitch left keeps its rest."""
        rest = self.vocab.encode(None)
        rows = mask.expand(len(soprano_tokens), -1) if mask.dim() == 1 else mask
        no_rest = rows.clone()
        no_rest[:, rest] = False
        keep = (soprano_tokens != rest) & (no_rest & (self._token_pitch >= 0)).any(dim=-1)
        return torch.where(keep.unsqueeze(-1), no_rest, rows)

    def _pitch_of(self, token: int) -> int:
        return -1 if token < self.vocab.FIRST_PITCH else token - self.vocab.FIRST_PITCH + self.vocab.pitch_lo

    def _rule_mask(self, mask: torch.Tensor, voice: int, pitches: list[int]) -> torch.Tensor:
        """``mask`` less the pitches that break the voice-leading rules, unless that leaves no pitch."""
        lo, hi = self.voice_ranges[voice]
        bad = forbidden_pitches(self._prev_pitches, pitches, voice, lo, hi, parallels=self.avoid_parallels,
                                crossing=self.avoid_crossing)
        if not bad:
            return mask
        ruled = mask.clone()
        ruled[[self.vocab.encode(p) for p in bad]] = False
        return ruled if bool(ruled[self.vocab.FIRST_PITCH :].any()) else mask

    def finish_step(self, interrupted: Callable[[], bool] | None = None) -> bool:
        """Feed the chord of the step just returned to the Transformer and build the next step's chords (off the
        latency-critical path). ``interrupted`` is asked before each pass of the voice head, as in ``prepare``:
        when it says True (a melody note is waiting) the chords are left part-built (that note's ``step``
        finishes its own row; ``prepare`` the rest). True when the next step's chords are complete."""
        if self._pending is None:
            return self._chords is not None and self._chords.table is not None
        chord = torch.tensor([self._pending])
        self._pending = None
        self._step_index += 1
        cache = self._cache
        with torch.inference_mode():
            if cache.length >= cache.capacity:
                self.net.gpt.slide(cache, cache.capacity * 3 // 4)  # exact re-encode of the recent steps
                self._undo = None  # the chord can no longer be taken back out of the context
            self._h = self.net.context(chord, torch.tensor([self._step_index % 4]), cache)
            return self._prepare_step(interrupted)

    def redo_step(self, soprano: int | None, *, sample: bool = True) -> Voices | None:
        """Take the last step again under the settings now in force (the left hand's chord came just after the
        melody note): its chord is taken back out of the context (finished or not) and sampled anew for
        `soprano` with the one-soprano path; call ``finish_step`` after, as after ``step``. None when the step
        can no longer be taken back (none taken since the reset, or the context slid since)."""
        if self._undo is None:
            return None
        self._h, self._alto_table, self._prev_pitches, self.octave_shift_semitones, length = self._undo
        if self._pending is None:  # finished: its chord is in the context and the step index moved on
            self._cache.truncate(length)
            self._step_index -= 1
        self._pending = None
        self._chords = None  # prepared for the step after: gone with it
        return self.step(soprano, sample=sample)

    def harmonize_melody(self, pitches_per_step: Sequence[int | None], seed: int = 0, *,
                         sample: bool = True) -> list[Voices]:
        """Offline: harmonize a whole melody given per 16th step (None = rest) from a fresh start."""
        self._sample = sample
        self.reset(seed)
        out = []
        for pitch in pitches_per_step:
            out.append(self.step(pitch, sample=sample))
            self.finish_step()
        return out


def _quantize_head(net: ChoraleNet) -> bool:
    """Swap the head's nn.Linear layers for dynamic-int8 ones; False where this torch build lacks them."""
    quantization = getattr(torch, "ao", None) and getattr(torch.ao, "quantization", None)
    quantize_dynamic = getattr(quantization, "quantize_dynamic", None)
    if quantize_dynamic is None or "fbgemm" not in torch.backends.quantized.supported_engines:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # eager-mode quantization is deprecated upstream
        warnings.simplefilter("ignore", UserWarning)
        net.head = quantize_dynamic(net.head, {torch.nn.Linear}, dtype=torch.qint8)
    return True


def _head_is_int8(net: ChoraleNet) -> bool:
    return "quantized" in type(net.head.out).__module__
