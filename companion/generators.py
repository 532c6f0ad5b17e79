"""The bridge to models/: a Generator protocol, the Markov fallback, and lazy loading of the neural models."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from companion.core.events import PPQ, Note, RequestAnswer
from companion.core.theory import Key

log = logging.getLogger(__name__)


class Generator(Protocol):
    """Streams an answer's notes in time order, in absolute ticks; runs on the generator worker thread."""

    name: str

    def stream(self, request: RequestAnswer) -> Iterator[Note]: ...


def _relative_prompt(request: RequestAnswer) -> list[tuple[int, int, int, int]]:
    """The phrase as (pitch, velocity, onset, duration) relative to its bar line, as models/ expects."""
    start = request.phrase.start_ticks
    return [(n.pitch, n.velocity, n.start_ticks - start, n.duration_ticks) for n in request.phrase.notes]


def _key_pitch_classes(request: RequestAnswer) -> set[int] | None:
    if request.key is None or not request.settings.get("key_lock", True):
        return None
    tonic_pc, mode = request.key
    return set(Key(tonic_pc, mode).scale_pitch_classes)


def _to_absolute(request: RequestAnswer, notes: Iterator[tuple[int, int, int, int]]) -> Iterator[Note]:
    """Place relative model notes at the answer's start, clipped to its end, on the output channel."""
    channel = int(request.settings.get("output_channel", 0))
    for pitch, velocity, onset_ticks, duration_ticks in notes:
        start = request.start_ticks + onset_ticks
        if start >= request.end_ticks:
            return
        duration = max(1, min(duration_ticks, request.end_ticks - start))
        yield Note(pitch, max(1, min(127, velocity)), start, duration, channel)


class MarkovGenerator:
    """Continuator-style fallback: learns the session's phrases, answers in the player's key and feel."""

    name = "markov"

    def __init__(self, max_order: int = 4) -> None:
        from models.markov import MarkovResponder

        self._responder = MarkovResponder(max_order=max_order)

    def stream(self, request: RequestAnswer) -> Iterator[Note]:
        prompt = _relative_prompt(request)
        self._responder.learn(prompt)
        answer = self._responder.respond(
            prompt,
            length_ticks=request.end_ticks - request.start_ticks,
            ppq=PPQ,
            key_pcs=_key_pitch_classes(request),
            seed=request.seed,
            temperature=float(request.settings.get("temperature", 1.0)),
        )
        yield from _to_absolute(request, iter(answer))


class TransformerGenerator:
    """The trained continuation Transformer, streaming notes as they are decoded."""

    name = "transformer"

    def __init__(self, checkpoint: Path | None = None) -> None:
        from models.continuation import ContinuationModel

        self._model = ContinuationModel.load(checkpoint)

    def stream(self, request: RequestAnswer) -> Iterator[Note]:
        s = request.settings
        notes = self._model.stream(
            _relative_prompt(request),
            ppq=PPQ,
            length_ticks=request.end_ticks - request.start_ticks,
            answer_start_ticks=request.start_ticks - request.phrase.start_ticks,
            style=s.get("style", "folk"),
            key=request.key,
            key_pcs=_key_pitch_classes(request),
            temperature=float(s.get("temperature", 1.0)),
            top_p=float(s.get("top_p", 0.95)),
            seed=request.seed,
            density=s.get("density"),
            pitch_range=s.get("pitch_range"),
            meter=f"{s.get('beats_per_bar', 4)}/{s.get('beat_unit', 4)}",
        )
        yield from _to_absolute(request, notes)


def make_generator(model: str = "auto", checkpoint: Path | None = None) -> tuple[Generator, str | None]:
    """The generator to use, and a warning to show if the Transformer was wanted but is not available."""
    if model == "markov":
        return MarkovGenerator(), None
    try:
        return TransformerGenerator(checkpoint), None
    except (ImportError, FileNotFoundError, ValueError, RuntimeError, OSError) as err:
        if model == "transformer":
            raise
        return MarkovGenerator(), f"Transformer not available ({err}); answering with the Markov responder"
