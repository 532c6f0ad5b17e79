"""The bridge to models/: a Generator protocol, the Markov fallback, and lazy loading of the neural models."""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from companion.core.events import PPQ, Note, RequestAnswer
from companion.core.theory import Key

log = logging.getLogger(__name__)


class Generator(Protocol):
    """Streams an answer's notes in time order, in absolute ticks; runs on the generator worker thread."""

    name: str

    def stream(self, request: RequestAnswer) -> Iterator[Note]: ...


def _relative_prompt(request: RequestAnswer, history: _OwnHistory | None = None) -> list[tuple[int, int, int, int]]:
    """The phrase as (pitch, velocity, onset, duration) relative to its bar line, as models/ expects.

    Duet and generate requests name the tags of their earlier spans in settings["continues"]: what those
    spans played before this answer's start (within the phrase's window) joins the prompt, so the model
    continues its own line as well as the player's.
    """
    start = request.phrase.start_ticks
    notes = list(request.phrase.notes)
    if history is not None:
        notes += history.notes(request.settings.get("continues", ()), start, request.start_ticks)
    notes.sort(key=lambda n: (n.start_ticks, n.pitch))
    return [(n.pitch, n.velocity, n.start_ticks - start, n.duration_ticks) for n in notes]


class _OwnHistory:
    """What recent requests yielded, by tag (bounded), for requests that continue their own output."""

    def __init__(self, max_tags: int = 64) -> None:
        self._by_tag: OrderedDict[str, list[Note]] = OrderedDict()
        self._max_tags = max_tags

    def record(self, tag: str, notes: Iterator[Note]) -> Iterator[Note]:
        kept = self._by_tag.setdefault(tag, [])
        self._by_tag.move_to_end(tag)
        while len(self._by_tag) > self._max_tags:
            self._by_tag.popitem(last=False)
        for note in notes:
            kept.append(note)
            yield note

    def notes(self, tags: Iterable[str], from_ticks: int, until_ticks: int) -> list[Note]:
        """Notes of `tags` starting in [from_ticks, until_ticks), cut at `until_ticks` (later ones were replaced)."""
        out: list[Note] = []
        for tag in tags:
            for n in self._by_tag.get(tag, ()):
                if from_ticks <= n.start_ticks < until_ticks:
                    out.append(Note(n.pitch, n.velocity, n.start_ticks,
                                    min(n.duration_ticks, until_ticks - n.start_ticks), n.channel))
        return out


def _seed_motif(request: RequestAnswer) -> list[tuple[int, int, int, int]]:
    """A one-bar arpeggio in the request's key: something for the Markov responder to continue from nothing."""
    tonic_pc, mode = request.key or (0, "major")
    scale = sorted(Key(tonic_pc, mode).scale_pitch_classes)
    root = 60 + tonic_pc - (12 if tonic_pc > 6 else 0)
    degree_pitch = [root + ((pc - tonic_pc) % 12) for pc in scale]
    bar_ticks = request.phrase.bar_ticks
    beats = max(1, int(request.settings.get("beats_per_bar", 4)))
    step = bar_ticks // (2 * beats)
    pattern = [0, 2, 4, 2, 3, 1, 4, 0]
    return [(degree_pitch[d % len(degree_pitch)], 80, i * step, step) for i, d in enumerate(pattern[: 2 * beats])]


def _call_density(request: RequestAnswer) -> float | None:
    """An answer as busy as the call (notes per bar of the player's phrase), unless the preset sets a density."""
    phrase = request.phrase
    if request.settings.get("task") in ("duet", "generate") or not phrase.notes or phrase.bar_ticks <= 0:
        return None
    onsets = {n.start_ticks for n in phrase.notes}  # a chord counts once
    # bars from the first note, not the phrase's bar line: a pickup does not count as a bar of its own
    bars = max(1.0, (max(n.end_ticks for n in phrase.notes) - min(onsets)) / phrase.bar_ticks)
    return max(1.0, len(onsets) / bars)


PLAYED_PC_SHARE = 0.05  # a pitch class the player keeps using (this share of the phrase's notes, twice at least)


def _key_pitch_classes(request: RequestAnswer) -> set[int] | None:
    """The key lock: the key's scale, and the pitch classes the player keeps using in the phrase (a dorian 6th,
    a minor tune's leading tone, a blue note), so the answer is not kept out of notes that belong to the tune."""
    if request.key is None or not request.settings.get("key_lock", True):
        return None
    tonic_pc, mode = request.key
    counts: dict[int, int] = {}
    for n in request.phrase.notes:
        counts[n.pitch % 12] = counts.get(n.pitch % 12, 0) + 1
    least = max(2, PLAYED_PC_SHARE * len(request.phrase.notes))
    return set(Key(tonic_pc, mode).scale_pitch_classes) | {pc for pc, c in counts.items() if c >= least}


VELOCITY_CURVES = {"linear": 1.0, "soft": 1.5, "hard": 0.67}  # exponent on velocity/127: soft is gentler
HUMANIZE_MAX_TICKS = PPQ // 16  # humanize 1.0 moves a note up to a 64th either way...
HUMANIZE_MAX_VELOCITY = 20  # ...and its velocity up to 20 either way


def _to_absolute(request: RequestAnswer, notes: Iterator[tuple[int, int, int, int]]) -> Iterator[Note]:
    """Place relative model notes at the answer's start, clipped to its end, on the output channel, shaped by the
    preset's [midi] quantize, humanize and velocity curve (one place for every generated answer's notes)."""
    from companion.presets.schema import QUANTIZE_GRIDS

    s = request.settings
    channel = int(s.get("output_channel", 0))
    grid = QUANTIZE_GRIDS.get(str(s.get("quantize", "off")), 0)
    humanize = max(0.0, min(1.0, float(s.get("humanize") or 0.0)))
    curve = str(s.get("velocity_curve", "linear"))
    fixed = int(s.get("fixed_velocity", 100))
    rng = random.Random(request.seed)  # humanize is part of the answer: the same seed, the same feel
    for pitch, velocity, onset_ticks, duration_ticks in notes:
        start = request.start_ticks + onset_ticks
        if start >= request.end_ticks:
            return
        end = start + duration_ticks
        if grid:
            start = request.start_ticks + round(onset_ticks / grid) * grid
        if humanize:
            start += round(rng.uniform(-1, 1) * humanize * HUMANIZE_MAX_TICKS)
            velocity += round(rng.uniform(-1, 1) * humanize * HUMANIZE_MAX_VELOCITY)
        start = max(request.start_ticks, min(start, request.end_ticks - 1))
        if curve == "fixed":
            velocity = fixed
        elif curve in VELOCITY_CURVES:
            velocity = round(127 * (max(1, min(127, velocity)) / 127) ** VELOCITY_CURVES[curve])
        duration = max(1, min(end, request.end_ticks) - start)
        yield Note(pitch, max(1, min(127, velocity)), start, duration, channel)


class MarkovGenerator:
    """Continuator-style fallback: learns the session's phrases, answers in the player's key and feel."""

    name = "markov"

    # the responder's defaults: measured against held-out tunes' real continuations and the plain order-2 chain
    # (`companion eval continuation`, models/checkpoints/continuation.md); `options` are MarkovResponder's
    def __init__(self, **options: Any) -> None:
        from models.continuation.markov import MarkovResponder

        self._responder = MarkovResponder(**options)
        self._history = _OwnHistory()

    def stream(self, request: RequestAnswer) -> Iterator[Note]:
        prompt = _relative_prompt(request, self._history)
        if not prompt and request.settings.get("task") == "generate":
            prompt = _seed_motif(request)
        if not prompt:
            return
        self._responder.learn(prompt)
        answer = self._responder.respond(
            prompt,
            length_ticks=request.end_ticks - request.start_ticks,
            ppq=PPQ,
            key_pcs=_key_pitch_classes(request),
            seed=request.seed,
            temperature=float(request.settings.get("temperature", 1.0)),
            bar_ticks=request.phrase.bar_ticks,
        )
        yield from self._history.record(request.tag, _to_absolute(request, iter(answer)))


class TransformerGenerator:
    """The trained continuation Transformer, streaming notes as they are decoded."""

    name = "transformer"

    def __init__(self, checkpoint: Path | None = None) -> None:
        from models.continuation.model import DEFAULT_CHECKPOINT, ContinuationModel

        self.checkpoint = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        self._model = ContinuationModel.load(self.checkpoint)
        self._history = _OwnHistory()
        # The first decode pays for lazy set-up (allocations, kernels): pay it now, not in the first answer.
        warm = [(62, 80, 0, PPQ), (66, 80, PPQ, PPQ), (69, 80, 2 * PPQ, PPQ)]
        next(iter(self._model.stream(warm, ppq=PPQ, length_ticks=4 * PPQ, first_on_start=True)), None)

    def stream(self, request: RequestAnswer) -> Iterator[Note]:
        s = request.settings
        prompt = _relative_prompt(request, self._history)
        common = dict(
            ppq=PPQ,
            length_ticks=request.end_ticks - request.start_ticks,
            style=s.get("style", "folk"),
            key=request.key,
            key_pcs=_key_pitch_classes(request),
            temperature=float(s.get("temperature", 1.0)),
            top_p=float(s.get("top_p", 0.95)),
            seed=request.seed,
            density=s.get("density") or _call_density(request),
            pitch_range=s.get("pitch_range"),
            meter=f"{s.get('beats_per_bar', 4)}/{s.get('beat_unit', 4)}",
            **{k: float(s[k]) for k in ("style_mix", "copy_share", "template_mix") if s.get(k) is not None},
        )
        if prompt:
            notes = self._model.stream(prompt, answer_start_ticks=request.start_ticks - request.phrase.start_ticks,
                                       first_on_start=s.get("task") not in ("duet", "generate"), **common)
        else:  # generate mode's first span: nothing to continue, play from the style and key alone
            notes = self._model.generate(**common)
        yield from self._history.record(request.tag, _to_absolute(request, notes))


class ModeRouter:
    """Sends each request to the model its mode needs: the phrase VAE for variation and morph (requests that carry
    settings["vae"]), the continuation model (Transformer or Markov) for everything else."""

    def __init__(self, main: Generator, *, preload_vae: bool = False) -> None:
        self.main = main
        self._vae: Generator | None = None
        self._vae_error: str | None = None
        self.drums: Any = None  # companion.worker.drum_voice.DrumGenerator, once a drums request came
        if preload_vae:
            self._load_vae()

    @property
    def name(self) -> str:
        return self.main.name

    @property
    def checkpoint(self) -> Path | None:
        """The main model's checkpoint file (recorded with each take), if it has one."""
        return getattr(self.main, "checkpoint", None)

    @property
    def vae_available(self) -> bool:
        """False once the VAE failed to load (variation and morph then come from the main model)."""
        return self._vae_error is None

    def _load_vae(self) -> Generator | None:
        if self._vae is None and self._vae_error is None:
            try:
                self._vae = VaeGenerator()
            except (ImportError, FileNotFoundError, ValueError, RuntimeError, OSError) as err:
                self._vae_error = str(err)
                log.warning("phrase VAE not available (%s); variations come from the %s model", err, self.main.name)
        return self._vae

    def stream(self, request: RequestAnswer) -> Iterator[Note]:
        if request.settings.get("drums") is not None:  # the drums modes: the drum GAN, loaded on first use
            if self.drums is None:
                from companion.worker.drum_voice import DrumGenerator

                self.drums = DrumGenerator()
            return self.drums.stream(request)
        vae = self._load_vae() if request.settings.get("vae") is not None else None
        return (vae or self.main).stream(request)


def answering_model(mode: str, generator: Generator, harmony_style: str = "chorale") -> str:
    """The model that answers in `mode`, for the log and the UI: harmonize mode's harmonizer (not the generator),
    the phrase VAE for variation and morph, the continuation model (Transformer or Markov) for the rest."""
    if mode == "harmonize":
        return f"harmonizer ({harmony_style} style)"
    if getattr(generator, "loading", False):
        return f"{generator.name} (loading models)"
    if mode in ("variation", "morph") and getattr(generator, "vae_available", False):
        return "phrase VAE"
    return generator.name


def make_generator(model: str = "auto", checkpoint: Path | None = None,
                   preload_vae: bool = False) -> tuple[Generator, str | None]:
    """The generator to use, and a warning to show if the Transformer was wanted but is not available."""
    warning = None
    if model == "markov":
        main: Generator = MarkovGenerator()
    else:
        try:
            main = TransformerGenerator(checkpoint)
        except (ImportError, FileNotFoundError, ValueError, RuntimeError, OSError) as err:
            if model == "transformer":
                raise
            main = MarkovGenerator()
            warning = f"Transformer not available ({err}); answering with the Markov responder"
    return ModeRouter(main, preload_vae=preload_vae), warning


class VaeGenerator:
    """The phrase VAE: a variation ("vary") or a morph ("morph") of the player's phrases, as the request's
    ``settings["vae"]`` says (the variation and morph modes fill it in; without it, a variation)."""

    name = "vae"

    def __init__(self, checkpoint: Path | None = None) -> None:
        from models.vae.phrase import PhraseVAE

        self._model = PhraseVAE.load(checkpoint)

    def stream(self, request: RequestAnswer) -> Iterator[Note]:
        s = request.settings
        vae = dict(s.get("vae") or {})
        bar_ticks = request.phrase.bar_ticks
        steps_per_bar = bar_ticks // (PPQ // 4)
        bars = int(vae.get("bars") or max(1, -(-(request.end_ticks - request.start_ticks) // bar_ticks)))
        key_lock = bool(s.get("key_lock", True))
        temperature = float(vae.get("temperature", 0.0))
        prompt = _relative_prompt(request)
        if vae.get("op") == "morph":
            other = [(int(p), int(v), int(o), int(d)) for p, v, o, d in vae.get("other", [])]
            steps = int(vae.get("steps") or s.get("morph_steps") or 4)
            yield from _to_absolute(request, self._morph(other, prompt, bars, steps, steps_per_bar, key_lock))
            return
        distance = vae.get("distance", s.get("distance"))
        distance = 0.3 if distance is None else max(0.0, min(1.0, float(distance)))
        notes = self._model.vary(prompt, PPQ, bars, distance, int(vae.get("seed", request.seed)),
                                 steps_per_bar=steps_per_bar, temperature=temperature, key_lock=key_lock)
        yield from _to_absolute(request, iter(sorted(notes, key=lambda n: n[2])))

    def _morph(self, a: list[tuple[int, int, int, int]], b: list[tuple[int, int, int, int]], bars: int, steps: int,
               steps_per_bar: int, key_lock: bool) -> Iterator[tuple[int, int, int, int]]:
        """The morph's steps one after another, each decoded only when the one before has been streamed."""
        span = bars * steps_per_bar * (PPQ // 4)
        phrases = self._model.morph_iter(a, b, PPQ, bars, steps, steps_per_bar=steps_per_bar, key_lock=key_lock)
        for k, phrase in enumerate(phrases):
            for pitch, velocity, onset, duration in sorted(phrase, key=lambda n: n[2]):
                yield pitch, velocity, k * span + onset, max(1, min(duration, span - onset))


def model_choice(model_flag: str | None, checkpoint_flag: str | None,
                 preset_extras: Mapping[str, Any]) -> tuple[str, str | None]:
    """The model and checkpoint to use: the command line's flags win over the preset's [model] table (as
    `companion run`'s flags win over its [clock]); without either, "auto" and the shipped checkpoint."""
    return (model_flag or str(preset_extras.get("model") or "auto"),
            checkpoint_flag or preset_extras.get("checkpoint") or None)
