"""The continuation Transformer, live: load a checkpoint, stream an answer to a phrase note by note.

``ContinuationModel.stream`` yields (pitch, velocity, start_ticks, duration_ticks) tuples in onset order,
each as soon as its last token is sampled, onsets relative to the answer's start and never past its end.
Training lives in ``continuation_train`` (``train_main`` here runs it onto the shipped checkpoint) and
evaluation in ``evaluate`` (`companion eval transformer` runs it directly).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.articulation import played, read_as_written
from models.checkpoint import CheckpointFileError, build_model, from_config, load_checkpoint
from models.continuation.copies import DEFAULT_COPY_SHARE, HOLD_BACK, CopyGuard
from models.continuation.fast_decode import stepper
from models.continuation.prompt_style import (
    DEFAULT_MIX,
    DEFAULT_TEMPLATE_MIX,
    BarTemplates,
    PromptStyle,
    dense,
    mix_block,
    single_line,
)
from models.continuation.sampling import (
    MAX_CHORD_NOTES,
    MaskTables,
    anchor_mask,
    density_bias,
    density_error_bias,
    fill_mask,
    fill_rules,
    grammar_mask,
    onset_limit_mask,
    pitch_mask,
    sample_values,
)
from models.data.pieces import estimate_key
from models.tokenizer import DEFAULT_VELOCITY, Prompt, StreamDecoder, Tokenizer, TokenizerConfig
from models.transformer import GPT, GPTConfig

KIND = "continuation"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "continuation.pt"
NoteTuple = tuple[int, int, int, int]  # (pitch, velocity, start_ticks, duration_ticks)


class ContinuationModel:
    """A trained continuation model and its tokenizer, ready to answer phrases."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, meta: dict[str, Any] | None = None,
                 quantize: bool = False) -> None:
        self.model = model.eval()
        # the prompt's prefill and the per-token step of live decoding (int8: the C step, or torch's kernels)
        self.runner, self.fast = stepper(self.model, quantize)
        self.tokenizer = tokenizer
        self.meta = meta or {}
        self.tables = MaskTables(tokenizer.vocab)

    @classmethod
    def load(cls, path: str | Path | None = None, *, quantize: bool = True,
             threads: int | None = 1) -> ContinuationModel:
        """Load a checkpoint (default: the shipped one). ``threads`` sets torch's intra-op threads (None: keep).

        Raises ``CheckpointFileError`` (a ValueError) naming the file if it is missing or does not fit.
        """
        if threads is not None:
            torch.set_num_threads(threads)
        path = Path(path) if path is not None else DEFAULT_CHECKPOINT
        state, meta = load_checkpoint(path, kind=KIND)
        model = build_model(path, lambda: GPT(GPTConfig.from_dict({**meta["model_config"], "dropout": 0.0})), state)
        tokenizer = from_config(path, "tokenizer_config",
                                lambda: Tokenizer(TokenizerConfig.from_dict(meta["tokenizer_config"])))
        if len(tokenizer.vocab) != model.config.vocab_size:
            raise CheckpointFileError(f"checkpoint {path}: its tokenizer_config makes {len(tokenizer.vocab)} tokens, "
                                      f"its model {model.config.vocab_size}: re-train it or give another checkpoint")
        model.eval()
        return cls(model, tokenizer, meta, quantize)

    @property
    def styles(self) -> tuple[str, ...]:
        return self.tokenizer.config.styles

    def stream(self, prompt_notes: Iterable[Sequence[int]], *, ppq: int = 480, length_ticks: int,
               style: str = "folk", key: tuple[int, str] | None = None, key_pcs: Iterable[int] | None = None,
               temperature: float = 1.0, top_p: float = 0.95, seed: int = 0, density: float | None = None,
               pitch_range: tuple[int, int] | None = None, meter: str = "4/4",
               answer_start_ticks: int | None = None, bars: int | None = None,
               follow_velocity: bool = True, first_on_start: bool = False,
               style_mix: float = DEFAULT_MIX, copy_share: float = DEFAULT_COPY_SHARE,
               template_mix: float = DEFAULT_TEMPLATE_MIX) -> Iterator[NoteTuple]:
        """Answer a phrase. Yields notes in onset order, each as soon as it is decoded.

        ``prompt_notes``: (pitch, velocity, start_ticks, duration_ticks) with tick 0 on the phrase's bar
        line. The answer starts at ``answer_start_ticks`` (default: the next bar line after the phrase)
        and lasts ``length_ticks`` (and at most ``bars`` bars); yielded onsets count from its start.
        ``key`` conditions the model (estimated from the phrase if None); ``key_pcs`` locks pitch classes;
        ``density`` steers towards that many notes per bar; ``follow_velocity`` shifts the answer's
        velocities by the phrase's mean loudness; ``first_on_start`` puts the first note exactly on the
        answer's start (a call-and-response answer begins on its beat). ``style_mix`` blends the phrase's own
        pitch, onset and duration habits into the model's choices (``prompt_style``; 0: the model alone);
        ``template_mix`` blends in the phrase's bar that answer bar follows (``BarTemplates``: its next onset,
        and the pitch and duration it had at that place; 0: none);
        ``copy_share`` bounds the share of the answer's 4-note runs that repeat the phrase's
        (``models.continuation.copies``; 1: no bound). ValueError for a bad argument.
        """
        notes = [tuple(int(x) for x in n[:4]) for n in prompt_notes]
        if ppq <= 0 or length_ticks < 0:
            raise ValueError(f"ppq must be positive and length_ticks not negative (got {ppq}, {length_ticks})")
        if style not in self.styles:
            raise ValueError(f"unknown style {style!r}; this model knows {', '.join(self.styles)}")
        if pitch_range is not None and not 0 <= pitch_range[0] <= pitch_range[1] <= 127:
            raise ValueError(f"pitch_range must be (low, high) within 0..127, got {pitch_range!r}")
        notes, touch = read_as_written(notes, ppq)  # the player's touch and offset out; the answer gets the touch
        meter = self.supported_meter(meter)
        if key is None and notes:
            key = estimate_key([n[0] for n in notes], [max(1, n[3]) for n in notes])
        prompt = self._prompt(notes, ppq, style, meter, key, answer_start_ticks)
        length_steps = self.tokenizer.ticks_to_steps(length_ticks, ppq)
        if bars is not None:
            length_steps = min(length_steps, max(0, bars) * prompt.bar_positions)
        shift = 0
        if follow_velocity and notes:
            shift = round(sum(n[1] for n in notes) / len(notes)) - DEFAULT_VELOCITY
        masks = pitch_mask(self.tables, key_pcs, pitch_range)
        return self._run(prompt, length_steps, ppq, masks, temperature, top_p, seed, density, shift, first_on_start,
                         max(0.0, min(1.0, style_mix)), max(0.0, min(1.0, copy_share)),
                         max(0.0, min(1.0, template_mix)), touch)

    def generate(self, *, ppq: int = 480, length_ticks: int, style: str = "folk", meter: str = "4/4",
                 key: tuple[int, str] | None = None, seed: int = 0, **kw: Any) -> Iterator[NoteTuple]:
        """Play on its own from a style, meter and key (a random key from the seed if None)."""
        if key is None:
            rng = random.Random(seed)
            key = (rng.randrange(12), rng.choice(("major", "minor")))
        return self.stream([], ppq=ppq, length_ticks=length_ticks, style=style, meter=meter, key=key,
                           seed=seed, answer_start_ticks=0, follow_velocity=False, **kw)

    def supported_meter(self, meter: str) -> str:
        """``meter`` if the tokenizer has it, else one with the same bar length, else 4/4 (never fails live)."""
        cfg = self.tokenizer.config
        if meter in cfg.meters:
            return meter
        try:
            num, den = (int(x) for x in meter.split("/"))
        except ValueError:
            raise ValueError(f"meter must look like '6/8', got {meter!r}") from None
        same = [m for m in cfg.meters if Fraction(num, den) == Fraction(*(int(x) for x in m.split("/")))]
        return same[0] if same else "4/4"

    # --- internals --------------------------------------------------------------------------------

    def _prompt(self, notes: list[tuple[int, ...]], ppq: int, style: str, meter: str,
                key: tuple[int, str] | None, answer_start_ticks: int | None) -> Prompt:
        """Encode the phrase, keeping only as many recent bars as leave room to answer in the context."""
        room = self.model.config.block_size * 3 // 4
        max_bars: int | None = None
        while True:
            prompt = self.tokenizer.encode_prompt(notes, ppq=ppq, style=style, meter=meter, key=key,
                                                  answer_start_ticks=answer_start_ticks, max_bars=max_bars)
            if len(prompt.tokens) <= room:
                return prompt
            bars_now = prompt.answer_start // prompt.bar_positions - prompt.start_bar + 1
            if bars_now <= 1:
                return Prompt(prompt.tokens[:3] + prompt.tokens[-(room - 3):], prompt.meter,
                              prompt.bar_positions, prompt.start_bar, prompt.answer_start, prompt.min_pos)
            max_bars = bars_now - 1

    def _allowed(self, dec: StreamDecoder, min_pos: int, anchored: bool, masks: torch.Tensor, start: int,
                 end: int, fill: tuple[bool, bool] = (False, False),
                 max_chord: int = MAX_CHORD_NOTES) -> np.ndarray | None:
        """The token ids that may follow what ``dec`` has read, ascending (None: nothing may).

        ``fill`` (``fill_rules``) keeps the answer going where it may not end yet, unless nothing else fits;
        ``max_chord`` bounds the notes at one onset (1: a single line).
        """
        grammar = grammar_mask(self.tables, dec, min_pos, masks, max_chord)
        grammar &= onset_limit_mask(self.tables, dec, end)
        if anchored:
            grammar &= anchor_mask(self.tables, dec, start)
        mask = grammar & masks
        if not bool(mask.any()):
            mask = grammar  # the locks admit no pitch at all: the grammar alone decides
            if not bool(mask.any()):
                return None
        if any(fill):
            filled = mask & fill_mask(self.tables, fill)
            mask = filled if bool(filled.any()) else mask
        return mask.numpy().nonzero()[0]

    @torch.inference_mode()
    def _run(self, prompt: Prompt, length_steps: int, ppq: int, masks: torch.Tensor, temperature: float,
             top_p: float, seed: int, density: float | None, velocity_shift: int,
             first_on_start: bool = False, style_mix: float = 0.0, copy_share: float = 1.0,
             template_mix: float = 0.0, touch: float = 1.0) -> Iterator[NoteTuple]:
        tok, v, runner = self.tokenizer, self.tokenizer.vocab, self.runner
        gen = torch.Generator().manual_seed(seed)
        dec = StreamDecoder(tok, prompt.meter, start_bar=prompt.start_bar - 1)
        heard = [n for n in (dec.feed(t) for t in prompt.tokens) if n is not None]
        bar_len = prompt.bar_positions
        onsets = sorted({n.onset for n in heard})
        per_bar = density or (len(onsets) / max(1.0, (onsets[-1] - onsets[0]) / bar_len) if onsets else 0.0)
        start, end = prompt.answer_start, prompt.answer_start + length_steps
        answer_bars = -(-length_steps // bar_len)
        templates = BarTemplates(heard, bar_len, start // bar_len, answer_bars) if template_mix > 0 else None
        mixer = _StyleMixer(self.tables, tok.config.durations, PromptStyle(bar_len).fit(heard), heard,
                            style_mix, copy_share, round(per_bar * length_steps / bar_len), templates, template_mix)
        max_chord = 1 if single_line(heard) else MAX_CHORD_NOTES  # a line is answered by a line
        answer_bar, last_bar = start // bar_len, (end - 1) // bar_len
        last_note_bar = answer_bar - 1  # the bar of the latest note yielded: the answer fills to its last bar
        if length_steps <= 0:
            return
        cache = runner.new_cache(1, self.model.config.block_size)
        logits = runner.step(torch.tensor([prompt.tokens]), cache)[0]
        notes_out = 0
        allowed_memo: dict[tuple[Any, ...], np.ndarray | None] = {}  # decoder state -> ids
        while True:
            min_pos = prompt.min_pos if dec.bar == answer_bar else 0
            anchored = first_on_start and notes_out == 0
            fill = fill_rules(dec.bar, answer_bar, last_bar, last_note_bar)
            key = (*_mask_key(dec, min_pos, anchored, max_chord), fill)
            if key in allowed_memo:
                allowed = allowed_memo[key]
            else:
                allowed = allowed_memo[key] = self._allowed(dec, min_pos, anchored, masks, start, end, fill,
                                                            max_chord)
            if allowed is None:
                return
            if density is not None and density > 0:
                elapsed = (dec.onset - start) / bar_len if dec.bar >= answer_bar else 0.0
                logits = density_bias(self.tables, logits, density_error_bias(density, notes_out, elapsed))
            z = mixer.mix(logits.numpy()[allowed], allowed, dec)
            t = sample_values(z, allowed, temperature, top_p, gen)  # over the allowed only
            if t == v.eos or (t == v.bar and (dec.bar + 1) * bar_len >= end):
                return
            note = dec.feed(t)
            if note is not None:
                mixer.heard(note)
            if note is not None and start <= note.onset < end:
                notes_out += 1
                last_note_bar = note.onset // bar_len
                rel = note.onset - start
                dur = min(note.duration, end - note.onset)
                vel = max(1, min(127, note.velocity + velocity_shift))
                yield (note.pitch, vel, tok.steps_to_ticks(rel, ppq), played(tok.steps_to_ticks(dur, ppq), touch))
            logits = self.fast.step(t, cache)


class _StyleMixer:
    """The phrase's style (``PromptStyle``) blended into the model's pitch, position and duration choices, and
    the copy guard (``CopyGuard``) holding back melody pitches that would recite the phrase."""

    def __init__(self, tables: MaskTables, durations: Sequence[int], style: PromptStyle, heard: list[Any],
                 weight: float, copy_share: float = 1.0, expected_notes: int | None = None,
                 templates: BarTemplates | None = None, template_weight: float = 0.0) -> None:
        v = tables.vocab
        self.on = weight > 0 and not style.empty
        self.style, self.weight = style, weight
        self.blocks = {k: v.block(k) for k in ("pitch", "pos", "dur")}
        self.dur_index = {d: i for i, d in enumerate(durations)}
        self.line: list[int] = []  # the top voice so far (prompt, then answer)
        self.last_onset = -1
        for n in heard:
            self.heard(n)
        self.answer_from = len(self.line)  # where the answer's own top voice starts in ``line``
        self.guard = CopyGuard([self.line], copy_share, expected_notes) if copy_share < 1.0 else None
        self.hold_back = float(np.log(HOLD_BACK))
        self.templates = templates  # None: no templates mixed in
        self.template_weight = template_weight

    def heard(self, note: Any) -> None:
        if note.onset == self.last_onset and self.line:
            self.line[-1] = max(self.line[-1], note.pitch)
        else:
            self.line.append(note.pitch)
            self.last_onset = note.onset

    def mix(self, z: np.ndarray, allowed: np.ndarray, dec: StreamDecoder) -> np.ndarray:
        expected = dec.expected()
        melody = "pitch" in expected and dec.last_kind != "dur"  # a melody note, not a chord tone above one
        if self.on:
            z = self._mix_style(z, allowed, dec, expected, melody)
        if self.templates is not None:
            z = self._mix_template(z, allowed, dec, expected, melody, self.templates.bar(dec.bar))
        if self.guard is not None and melody:  # last: the style's own odds would undo it
            z = self._hold_back_copies(z, allowed)
        return z

    def _mix_style(self, z: np.ndarray, allowed: np.ndarray, dec: StreamDecoder, expected: Any,
                   melody: bool) -> np.ndarray:
        blocks = self.blocks
        if "pos" in expected:
            pos = self.style.pos_probs(dec.pos)
            z = mix_block(z, allowed, blocks["pos"], dense(pos, {k: k for k in pos}, len(blocks["pos"])), self.weight)
        if melody:
            pitch = self.style.pitch_probs(self.line[-2:])
            z = mix_block(z, allowed, blocks["pitch"], dense(pitch, {k: k for k in pitch}, 128), self.weight)
        if "dur" in expected:
            dur = self.style.dur_probs(max(0, dec.pos))
            z = mix_block(z, allowed, blocks["dur"], dense(dur, self.dur_index, len(blocks["dur"])), self.weight)
        return z

    def _mix_template(self, z: np.ndarray, allowed: np.ndarray, dec: StreamDecoder, expected: Any, melody: bool,
                      bar: dict[int, tuple[int, int]]) -> np.ndarray:
        """The template bar's next onset after the current one, and at an onset it has, its pitch (for the melody
        note) and duration, each a one-hot blended into its block."""
        if not bar:
            return z
        blocks, w = self.blocks, self.template_weight
        if "pos" in expected:
            later = [p for p in bar if p > dec.pos]
            if later:
                z = mix_block(z, allowed, blocks["pos"], _one_hot(min(later), len(blocks["pos"])), w)
        here = bar.get(dec.pos)
        if here is not None and melody:
            z = mix_block(z, allowed, blocks["pitch"], _one_hot(here[0], 128), w)
        if here is not None and "dur" in expected and here[1] in self.dur_index:
            z = mix_block(z, allowed, blocks["dur"], _one_hot(self.dur_index[here[1]], len(blocks["dur"])), w)
        return z

    def _hold_back_copies(self, z: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        held = self.guard.held_back(self.line[self.answer_from :]) if self.guard is not None else ()
        if not held:
            return z
        wanted = np.asarray(sorted(self.blocks["pitch"].start + p for p in held))
        ids = np.searchsorted(allowed, wanted)
        found = ids < len(allowed)
        ids = ids[found][allowed[ids[found]] == wanted[found]]  # held-back pitches the masks still allow
        if len(ids) == 0:
            return z
        z = z.astype(np.float64)  # a copy: the caller's logits stay as they were
        z[ids] += self.hold_back
        return z


def _one_hot(index: int, size: int) -> np.ndarray:
    out = np.zeros(size)
    out[index] = 1.0
    return out


def _mask_key(dec: StreamDecoder, min_pos: int, anchored: bool, max_chord: int) -> tuple[Any, ...]:
    """Everything of the decoder's state that ``ContinuationModel._allowed`` reads (within one answer)."""
    expected = dec.expected()
    onsets = "pos" in expected
    return (expected, dec.last_kind == "dur" and dec.chord_size >= max_chord, dec.pitch, dec.bar_positions,
            (dec.pos, min_pos) if onsets else None, dec.bar if onsets or anchored else None, anchored)


def train_main(argv: list[str] | None = None) -> int:
    """``companion train transformer``: see ``models.continuation.train``."""
    from models.continuation.train import train_main as run

    return run(argv, shipped=DEFAULT_CHECKPOINT)
