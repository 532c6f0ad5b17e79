"""The phrase VAE, live: load a checkpoint; encode, decode, vary and morph melodies given as note tuples.

Notes are (pitch, velocity, onset_ticks, duration_ticks) relative to the phrase's bar line, as the live
engine and the offline modes hand them over; results come back the same way. A phrase longer than the
model's (64 16ths) is handled a few bars at a time by ``vary`` and ``morph``. Training and evaluation live in
``vae_train`` and ``vae_eval`` (`companion train|eval vae` runs them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.articulation import played, read_as_written
from models.checkpoint import build_model, from_config, load_checkpoint
from models.data.pieces import estimate_key
from models.vae.cpu import NumpyDecoder, allowed_array
from models.vae.data import notes_to_tokens, ticks_to_step_notes, tokens_to_notes
from models.vae.net import PhraseVAENet, VAEConfig, pitch_mask
from models.vae.train import KIND, train_main

__all__ = ["DEFAULT_CHECKPOINT", "PhraseLatent", "PhraseVAE", "bench_vae", "phrase_tokens", "train_main"]

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "vae.pt"
NoteTuple = tuple[int, int, int, int]  # (pitch, velocity, onset_ticks, duration_ticks)
CENTRE_PITCH = 70  # the folk corpus's middle: phrases are moved by octaves to sit near it, and moved back
DEFAULT_VELOCITY = 88
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor with the leading tone folk tunes raise
_DENSITY_BIASES = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)  # note-on logit offsets tried
# in turn when a morph step has fewer (or, negated, more) notes than both of its ends


@contextmanager
def _one_thread() -> Iterator[None]:
    """Small step-by-step ops run faster on one thread than on a busy pool (and leave a core to the engine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def key_pitch_classes(notes: Iterable[Sequence[int]]) -> set[int] | None:
    """The pitch classes a phrase may use: the scale of its estimated key plus the ones it plays; None if unsure."""
    notes = list(notes)
    if not notes:
        return None
    key = estimate_key([n[0] for n in notes], [max(1, n[3]) for n in notes])
    if key is None:
        return None
    scale = _MINOR if key[1] == "minor" else _MAJOR
    return {(key[0] + s) % 12 for s in scale} | {n[0] % 12 for n in notes}


def _octave_shift(pitches: Sequence[int]) -> int:
    if not pitches:
        return 0
    return 12 * round((CENTRE_PITCH - float(np.mean(pitches))) / 12)


def phrase_tokens(notes: Iterable[Sequence[int]], ppq: int, n_steps: int) -> tuple[np.ndarray, int]:
    """Relative note tuples -> (the model's step tokens, the octave shift applied to reach its register)."""
    step_notes = ticks_to_step_notes(notes, ppq, n_steps)
    shift = _octave_shift([p for p, _, _ in step_notes])
    shifted = [(min(127, max(0, p + shift)), o, d) for p, o, d in step_notes]
    return notes_to_tokens(shifted, n_steps), shift


@dataclass(frozen=True)
class PhraseLatent:
    """A phrase encoded: the posterior mean ``z`` and what decoding needs to place the notes back."""

    z: np.ndarray  # (z_dim,) float32
    n_steps: int
    ppq: int
    octave_shift: int = 0  # semitones added before encoding (removed after decoding)
    velocities: tuple[tuple[int, int], ...] = ()  # (onset_step, velocity) of the input, for the dynamics


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-8 or nb < 1e-8:
        return (1 - t) * a + t * b
    omega = math.acos(float(np.clip(np.dot(a / na, b / nb), -1.0, 1.0)))
    if omega < 1e-4:
        return (1 - t) * a + t * b
    return (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)


class PhraseVAE:
    """A trained phrase VAE, ready to vary and morph a player's phrases (CPU, one thread)."""

    def __init__(self, net: PhraseVAENet, meta: dict[str, Any] | None = None) -> None:
        self.net = net.eval()
        self.meta = meta or {}
        self._decoder = NumpyDecoder(self.net)  # batch-1 decoding without torch's per-op cost

    @classmethod
    def load(cls, path: str | Path | None = None) -> PhraseVAE:
        """The shipped checkpoint (models/checkpoints/vae.pt) or ``path``; CheckpointFileError names the file."""
        path = Path(path) if path is not None else DEFAULT_CHECKPOINT
        state, meta = load_checkpoint(path, kind=KIND)
        net = build_model(path, lambda: PhraseVAENet(VAEConfig.from_dict(meta["model_config"])), state)
        return from_config(path, "model_config", lambda: cls(net, meta))

    @property
    def max_steps(self) -> int:
        return self.net.config.max_steps

    def _n_steps(self, ppq: int, bars: int, steps_per_bar: int) -> int:
        n_steps = bars * steps_per_bar
        if bars < 1 or n_steps > self.max_steps:
            raise ValueError(f"{bars} bar(s) of {steps_per_bar} 16ths do not fit the model's {self.max_steps} "
                             "16ths: give fewer bars (vary and morph split long phrases for you)")
        if ppq % 4:
            raise ValueError(f"PPQ {ppq} is not a multiple of 4: the model works on 16th notes")
        return n_steps

    # --- the pure API ------------------------------------------------------------------------------------

    def encode(self, notes: Iterable[Sequence[int]], ppq: int = 480, bars: int = 2, *,
               steps_per_bar: int = 16) -> PhraseLatent:
        """A phrase (relative note tuples) -> its latent (the posterior mean); notes past the end are left out."""
        n_steps = self._n_steps(ppq, bars, steps_per_bar)
        notes = [tuple(int(v) for v in n[:4]) for n in notes]
        tokens, shift = phrase_tokens(notes, ppq, n_steps)
        with torch.inference_mode(), _one_thread():
            mu, _ = self.net.encode(torch.from_numpy(tokens.astype(np.int64))[None])
        step_ticks = ppq // 4
        velocities = tuple(sorted({round(n[2] / step_ticks): n[1] for n in notes}.items()))
        return PhraseLatent(mu[0].numpy().copy(), n_steps, ppq, shift, velocities)

    def decode(self, latent: PhraseLatent | np.ndarray, seed: int = 0, temperature: float = 0.0, *,
               ppq: int | None = None, bars: int = 2, steps_per_bar: int = 16,
               key_pcs: set[int] | None = None, note_bias: float = 0.0) -> list[NoteTuple]:
        """A latent -> notes (greedy at temperature 0, else sampled with ``seed``); ``key_pcs`` locks the key.

        A bare array decodes ``bars`` bars at the model's octave with the default velocity.
        """
        if not isinstance(latent, PhraseLatent):
            ppq_used = ppq or 480
            latent = PhraseLatent(np.asarray(latent, dtype=np.float32), self._n_steps(ppq_used, bars, steps_per_bar),
                                  ppq_used)
        ppq_used = ppq or latent.ppq
        shift = latent.octave_shift
        allowed = None
        if key_pcs is not None:
            allowed = pitch_mask({(pc + shift) % 12 for pc in key_pcs}, self.net.config.n_classes)
        tokens = self._decoder.generate(latent.z, latent.n_steps, temperature, int(seed), allowed_array(allowed),
                                        note_bias)
        return self._to_notes(tokens, latent, ppq_used)

    def _to_notes(self, tokens: np.ndarray, latent: PhraseLatent, ppq: int) -> list[NoteTuple]:
        step_ticks = ppq // 4
        onsets = [s for s, _ in latent.velocities]
        out = []
        for pitch, onset, duration in tokens_to_notes(tokens):
            pitch -= latent.octave_shift
            if not 0 <= pitch <= 127:
                pitch = pitch % 12 + 12 * (5 if pitch > 127 else 1)
            if onsets:  # the velocity of the player's nearest onset keeps their accents
                velocity = latent.velocities[int(np.argmin([abs(o - onset) for o in onsets]))][1]
            else:
                velocity = DEFAULT_VELOCITY
            out.append((pitch, int(velocity), onset * step_ticks, duration * step_ticks))
        return out

    def reconstruct(self, notes: Iterable[Sequence[int]], ppq: int = 480, bars: int = 2, *,
                    steps_per_bar: int = 16) -> list[NoteTuple]:
        """Encode then decode greedily: what the model hears in a phrase."""
        return self.decode(self.encode(notes, ppq, bars, steps_per_bar=steps_per_bar))

    def _chunks(self, notes: Sequence[Sequence[int]], ppq: int, bars: int,
                steps_per_bar: int) -> list[tuple[int, int, list[NoteTuple]]]:
        """(first bar, bars, notes relative to that bar) pieces of at most the model's length."""
        if steps_per_bar > self.max_steps:
            raise ValueError(f"a bar of {steps_per_bar} 16ths is longer than the model's phrase")
        per_chunk = max(1, min(bars, self.max_steps // steps_per_bar))
        bar_ticks = steps_per_bar * ppq // 4
        out = []
        for first in range(0, bars, per_chunk):
            n = min(per_chunk, bars - first)
            lo, hi = first * bar_ticks, (first + n) * bar_ticks
            part = [(int(p), int(v), int(o) - lo, int(d)) for p, v, o, d in (tuple(x)[:4] for x in notes)
                    if lo <= o < hi]
            out.append((first, n, part))
        return out

    def vary(self, notes: Sequence[Sequence[int]], ppq: int = 480, bars: int = 2, distance: float = 0.3,
             seed: int = 0, *, steps_per_bar: int = 16, temperature: float = 0.0,
             key_lock: bool = True) -> list[NoteTuple]:
        """A variation: z' = (1 - d) mu + d eps, eps ~ N(0, I) from ``seed`` (d = 0 nearly the same, 1 a stranger).

        The same seed gives the same variation. With ``key_lock`` the notes keep to the phrase's key.
        """
        if not 0.0 <= distance <= 1.0:
            raise ValueError(f"distance must be between 0 and 1, got {distance}")
        bar_ticks = steps_per_bar * ppq // 4
        notes, touch = read_as_written(notes, ppq)  # a played phrase read as written, the variation played back
        out: list[NoteTuple] = []
        for i, (first, n_bars, part) in enumerate(self._chunks(notes, ppq, bars, steps_per_bar)):
            if not part:
                continue  # a silent stretch stays silent
            latent = self.encode(part, ppq, n_bars, steps_per_bar=steps_per_bar)
            rng = np.random.default_rng([int(seed), i])
            eps = rng.standard_normal(latent.z.shape).astype(np.float32)
            moved = PhraseLatent(((1.0 - distance) * latent.z + distance * eps).astype(np.float32),
                                 latent.n_steps, ppq, latent.octave_shift, latent.velocities)
            pcs = key_pitch_classes(part) if key_lock else None
            decoded = self.decode(moved, seed=seed + i, temperature=temperature, key_pcs=pcs)
            out.extend((p, v, o + first * bar_ticks, played(d, touch)) for p, v, o, d in decoded)
        return out

    def morph_iter(self, notes_a: Sequence[Sequence[int]], notes_b: Sequence[Sequence[int]], ppq: int = 480,
                   bars: int = 2, steps: int = 4, *, steps_per_bar: int = 16, key_lock: bool = True,
                   density_lock: bool = True) -> Iterator[list[NoteTuple]]:
        """Yield ``steps`` phrases from A to B (slerp of the latents, A and B included), one at a time.

        ``key_lock`` keeps every step to the pitch classes of A and B's key; ``density_lock`` steers a step
        whose note count falls outside the two ends' back between them.
        """
        if steps < 2:
            raise ValueError(f"a morph needs at least 2 steps (its two ends), got {steps}")
        notes_a, touch_a = read_as_written(notes_a, ppq)
        notes_b, touch_b = read_as_written(notes_b, ppq)
        chunks_a = self._chunks(notes_a, ppq, bars, steps_per_bar)
        chunks_b = self._chunks(notes_b, ppq, bars, steps_per_bar)
        bar_ticks = steps_per_bar * ppq // 4
        pcs = key_pitch_classes([*notes_a, *notes_b]) if key_lock else None
        plans = []
        for (first, n_bars, part_a), (_, _, part_b) in zip(chunks_a, chunks_b, strict=False):
            if not part_a and not part_b:
                plans.append(None)
                continue
            la = self.encode(part_a, ppq, n_bars, steps_per_bar=steps_per_bar)
            lb = self.encode(part_b, ppq, n_bars, steps_per_bar=steps_per_bar)
            counts = sorted((len(self.decode(la)), len(self.decode(lb))))
            plans.append((first, la, lb, counts))
        for k in range(steps):
            t = k / (steps - 1)
            phrase: list[NoteTuple] = []
            for plan in plans:
                if plan is None:
                    continue
                first, la, lb, counts = plan
                shift = la.octave_shift if t < 0.5 else lb.octave_shift
                z = _slerp(la.z, lb.z, t) if t not in (0.0, 1.0) else (la.z if t == 0.0 else lb.z)
                vel = la.velocities if t < 0.5 else lb.velocities
                latent = PhraseLatent(z.astype(np.float32), la.n_steps, ppq, shift, vel)
                decoded = self._decode_in_range(latent, pcs, counts if density_lock else None)
                touch = touch_a + t * (touch_b - touch_a)  # from A's touch to B's
                phrase.extend((p, v, o + first * bar_ticks, played(d, touch)) for p, v, o, d in decoded)
            yield phrase

    def morph(self, notes_a: Sequence[Sequence[int]], notes_b: Sequence[Sequence[int]], ppq: int = 480,
              bars: int = 2, steps: int = 4, **options: Any) -> list[list[NoteTuple]]:
        """All the steps of ``morph_iter`` as a list (A's reconstruction first, B's last)."""
        return list(self.morph_iter(notes_a, notes_b, ppq, bars, steps, **options))

    def _decode_in_range(self, latent: PhraseLatent, pcs: set[int] | None,
                         counts: list[int] | None) -> list[NoteTuple]:
        notes = self.decode(latent, key_pcs=pcs)
        if counts is None or counts[0] <= len(notes) <= counts[1]:
            return notes
        sign = 1.0 if len(notes) < counts[0] else -1.0
        best = notes
        for bias in _DENSITY_BIASES:
            trial = self.decode(latent, key_pcs=pcs, note_bias=sign * bias)
            if counts[0] <= len(trial) <= counts[1]:
                return trial
            if abs(len(trial) - sum(counts) / 2) < abs(len(best) - sum(counts) / 2):
                best = trial
        return best


def bench_vae(checkpoint: str | Path | None = None, runs: int = 30) -> dict[str, Any]:
    """Time encode+decode of a 2-bar phrase (and vary, a 4-step morph) on this CPU; milliseconds."""
    t0 = time.perf_counter()
    model = PhraseVAE.load(checkpoint)
    load_ms = (time.perf_counter() - t0) * 1e3
    phrase = [(60 + p, 90, i * 240, 220) for i, p in enumerate((0, 2, 4, 5, 7, 5, 4, 2, 0, 4, 7, 12, 7, 4, 2, 0))]
    other = [(67 - p, 80, i * 480, 460) for i, p in enumerate((0, 3, 5, 7, 8, 7, 5, 3))]

    def timed(fn: Any) -> list[float]:
        for _ in range(3):
            fn()
        out = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1e3)
        return sorted(out)

    enc_dec = timed(lambda: model.decode(model.encode(phrase, 480, 2)))
    vary = timed(lambda: model.vary(phrase, 480, 2, 0.5, 1))
    morph = timed(lambda: model.morph(phrase, other, 480, 2, 4))
    size = Path(checkpoint or DEFAULT_CHECKPOINT).stat().st_size
    return {"encode_decode_2bar_ms_median": round(enc_dec[len(enc_dec) // 2], 2),
            "encode_decode_2bar_ms_p90": round(enc_dec[int(0.9 * (len(enc_dec) - 1))], 2),
            "encode_decode_2bar_ms_max": round(enc_dec[-1], 2),
            "vary_2bar_ms_median": round(vary[len(vary) // 2], 2),
            "morph_2bar_4steps_ms_median": round(morph[len(morph) // 2], 2),
            "load_ms": round(load_ms, 1), "runs": runs, "threads": 1,
            "parameters": sum(p.numel() for p in model.net.parameters()),
            "checkpoint_mb": round(size / 2**20, 2)}
