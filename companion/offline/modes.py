"""`companion generate` modes beyond `continue`: a small dispatcher, and vary/interpolate with the phrase VAE.

Both place what they make after the input's last bar, on one channel the input does not use (interpolate then
has the second input written after its steps). Inputs longer than the model's phrase are handled two bars at a time; a
polyphonic input is heard as its top line.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from companion.core.events import PPQ, Note
from companion.errors import CompanionError, InputFileError, check_range, checkpoint_errors
from companion.files.midifile import MidiInput, read_midi

if TYPE_CHECKING:
    from models.vae.phrase import PhraseVAE

log = logging.getLogger("companion")

PHRASE_BARS = 2  # the phrase length the VAE reconstructs best
DEFAULT_DISTANCE = 0.3
DRUM_CHANNEL = 9
NoteTuple = tuple[int, int, int, int]
Then = list[tuple[MidiInput, int]]  # inputs to write as they are after the generated notes, each from its tick


class Made(NamedTuple):
    """What a mode made: notes (absolute ticks), inputs to write as they are after them, markers (ticks, text)."""

    notes: list[Note]
    then: Then
    markers: list[tuple[int, str]]


def run(args: argparse.Namespace, source: MidiInput, settings: dict[str, Any]) -> Made:
    """The generated notes for ``args.mode`` (absolute ticks), the inputs the caller writes as they are after
    them (interpolate's second input, with its start tick) and markers (harmonize's chord symbols);
    CompanionError (exit 2) for what cannot be done."""
    handlers: dict[str, Callable[[argparse.Namespace, MidiInput, dict[str, Any]], Made]] = {
        "vary": lambda *a: Made(vary_file(*a), [], []),
        "interpolate": lambda *a: Made(*interpolate_file(*a), []),
        "harmonize": _harmonize,
        "drums": lambda *a: Made(_drums(*a), [], []),
    }
    handler = handlers.get(args.mode)
    if handler is None:
        raise CompanionError(f"`companion generate {args.mode}` is not available in this version; "
                             f"try one of: continue, {', '.join(sorted(handlers))}")
    return handler(args, source, settings)


def _harmonize(args: argparse.Namespace, source: MidiInput, settings: dict[str, Any]) -> Made:
    """The melody (the input's top line) harmonized under its notes: lead-sheet chords in a style (`--style`,
    default pad) with their symbols as markers, or the chorale model (`--style chorale`)."""
    from companion.offline.harmonize import harmonize_with_symbols

    style = getattr(args, "style", None)
    if style:
        settings = {**settings, "harmony_style": style}
    notes, markers = harmonize_with_symbols(source, seed=args.seed, settings=settings)
    return Made(notes, [], markers)


def _drums(args: argparse.Namespace, source: MidiInput, settings: dict[str, Any]) -> list[Note]:
    """A drum track under the input, bar by bar (the drum GAN)."""
    from companion.offline.drums import drums_file

    return drums_file(args, source, settings)


def load_vae() -> PhraseVAE:
    """The shipped phrase VAE; a missing or broken checkpoint is a CheckpointError (exit 2) naming the file."""
    from models.vae.phrase import PhraseVAE

    with checkpoint_errors():
        return PhraseVAE.load()


def _steps_per_bar(source: MidiInput) -> int:
    step_ticks = PPQ // 4
    if source.bar_ticks % step_ticks:
        raise InputFileError(f"{source.path}: a bar of {source.beats_per_bar}/{source.beat_unit} is not a whole "
                             "number of 16th notes; the phrase VAE needs a meter on the 16th grid")
    return source.bar_ticks // step_ticks


def _melody(source: MidiInput) -> list[Note]:
    notes = [n for n in source.notes if n.channel != DRUM_CHANNEL]
    if not notes:
        raise InputFileError(f"{source.path}: every note is on the drum channel (10); give a melody")
    return notes


def _phrases(notes: list[Note], bar_ticks: int, end_ticks: int) -> list[list[NoteTuple]]:
    """The notes cut into PHRASE_BARS-bar phrases from tick 0, each relative to its bar line."""
    span = PHRASE_BARS * bar_ticks
    count = max(1, -(-end_ticks // span))
    out: list[list[NoteTuple]] = [[] for _ in range(count)]
    for n in notes:
        i = n.start_ticks // span
        if 0 <= i < count:
            out[i].append((n.pitch, n.velocity, n.start_ticks - i * span, n.duration_ticks))
    return out


def _free_channel(*sources: MidiInput) -> int:
    used = {n.channel for s in sources for n in s.notes}
    return next((c for c in range(16) if c not in used and c != DRUM_CHANNEL), 0)


def _end_bar(source: MidiInput) -> int:
    return -(-source.end_ticks // source.bar_ticks) * source.bar_ticks


def _place(notes: list[NoteTuple], offset_ticks: int, span_ticks: int, channel: int) -> list[Note]:
    """Relative notes -> absolute Notes at ``offset_ticks``, cut at the end of their phrase."""
    out = []
    for pitch, velocity, onset, duration in notes:
        if 0 <= onset < span_ticks:
            out.append(Note(pitch, max(1, min(127, velocity)), offset_ticks + onset,
                            max(1, min(duration, span_ticks - onset)), channel))
    return out


def _temperature(settings: dict[str, Any]) -> float:
    return float(settings.get("temperature") or 0.0)  # no --temperature: greedy decoding (the closest)


def vary_file(args: argparse.Namespace, source: MidiInput, settings: dict[str, Any]) -> list[Note]:
    """``--count`` variations of the whole input, one after another after its last bar."""
    distance = DEFAULT_DISTANCE if args.distance is None else float(args.distance)
    check_range("--distance", distance, 0.0, 1.0, " (0 nearly the same, 1 a stranger)")
    count = int(args.count)
    check_range("--count", count, 1, 64)
    steps_per_bar = _steps_per_bar(source)
    model = load_vae()
    phrases = _phrases(_melody(source), source.bar_ticks, source.end_ticks)
    span = PHRASE_BARS * source.bar_ticks
    start = _end_bar(source)
    channel = _free_channel(source)
    out: list[Note] = []
    for k in range(count):
        offset = start + k * len(phrases) * span
        for i, phrase in enumerate(phrases):
            if not phrase:
                continue
            seed = int(args.seed) + 1000 * k + i
            notes = model.vary(phrase, PPQ, PHRASE_BARS, distance, seed, steps_per_bar=steps_per_bar,
                               temperature=_temperature(settings))
            out.extend(_place(notes, offset + i * span, span, channel))
    log.info("vary: %d variation(s) of %d phrase(s) at distance %.2f, seed %d", count, len(phrases), distance,
             args.seed)
    return out


def interpolate_file(args: argparse.Namespace, source: MidiInput, settings: dict[str, Any]) -> tuple[list[Note], Then]:
    """``--steps`` steps from the first input to the second, both ends included: A as it is, the steps between
    on the `companion` track, then B as it is on its own track(s): the notes between, and B with its start tick
    for the caller to write (neither input is changed)."""
    steps = int(args.steps)
    check_range("--steps", steps, 3, 64, " (A and B included, so 3 makes one step between them)")
    other = read_midi(args.inputs[1])
    if other.bar_ticks != source.bar_ticks:
        raise InputFileError(f"{other.path}: its meter {other.beats_per_bar}/{other.beat_unit} differs from "
                             f"{source.path}'s {source.beats_per_bar}/{source.beat_unit}; give two files in one meter")
    steps_per_bar = _steps_per_bar(source)
    model = load_vae()
    phrases_a = _phrases(_melody(source), source.bar_ticks, source.end_ticks)
    phrases_b = _phrases(_melody(other), other.bar_ticks, other.end_ticks)
    n = max(len(phrases_a), len(phrases_b))  # the shorter input repeats, phrase by phrase
    span = PHRASE_BARS * source.bar_ticks
    start = _end_bar(source)
    channel = _free_channel(source, other)
    out: list[Note] = []
    for i in range(n):
        a, b = phrases_a[i % len(phrases_a)], phrases_b[i % len(phrases_b)]
        if not a and not b:
            continue
        between = model.morph(a, b, PPQ, PHRASE_BARS, steps, steps_per_bar=steps_per_bar)[1:-1]  # A, B: as they are
        for s, phrase in enumerate(between):
            out.extend(_place(phrase, start + (s * n + i) * span, span, channel))
    out.sort(key=lambda note: (note.start_ticks, note.pitch))
    log.info("interpolate: %s, then %d step(s) between (--steps %d counts both inputs), then %s; each step "
             "%d phrase(s) of %d bars", source.path.name, steps - 2, steps, other.path.name, n, PHRASE_BARS)
    return out, [(other, start + (steps - 2) * n * span)]
