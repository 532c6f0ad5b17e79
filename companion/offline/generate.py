"""File -> file generation (`companion generate MODE ...`), through the same generators the live engine uses."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from companion.core.events import Note, Phrase, RequestAnswer
from companion.core.theory import estimate_key
from companion.errors import InputFileError, UsageError, checkpoint_errors
from companion.files.midifile import MidiInput, append_input, read_midi, write_with_answer
from companion.offline.piece import check_bars
from companion.worker.generators import Generator, make_generator, model_choice

if TYPE_CHECKING:
    from companion.presets.preset import Preset

log = logging.getLogger("companion")

CONTINUE_TEMPERATURE = 0.7  # without --temperature or a preset's: as the folk preset answers (1.0 drifted more)
PROMPT_BARS = 4  # the continuation listens to the last bars of the input, as the live engine hears a phrase


def _prompt(source: MidiInput, bars: int = PROMPT_BARS) -> Phrase:
    """The input's last `bars` bars as a phrase starting on a bar line; the answer starts on the next bar line."""
    bar = source.bar_ticks
    end_bar = -(-source.end_ticks // bar) * bar  # the bar line at or after the input's end
    start = max(0, end_bar - bars * bar)
    notes = tuple(n for n in source.notes if n.start_ticks >= start)
    return Phrase(notes, start, end_bar, bar)


def load_generator(model: str = "auto", checkpoint: str | Path | None = None) -> Generator:
    """The generator `model` names. A checkpoint that was asked for (a --checkpoint, a preset's, or the shipped
    one under --model transformer) must load: a CheckpointError (exit 2) naming it, not a quiet fallback."""
    if model == "transformer" or (checkpoint and model == "auto"):
        with checkpoint_errors():
            return make_generator("transformer", Path(checkpoint) if checkpoint else None)[0]
    generator, warning = make_generator(model)
    if warning:
        log.warning(warning)
    return generator


def continue_file(source: MidiInput, *, bars: int, seed: int, generator: Generator | None = None,
                  settings: dict | None = None) -> list[Note]:
    """The continuation notes, placed after the input's end on a channel of their own (`generator`: "auto")."""
    phrase = _prompt(source)
    key = estimate_key((n.pitch, n.duration_ticks) for n in source.notes)
    generator = generator or load_generator()
    used_channels = {n.channel for n in source.notes}
    channel = next((c for c in range(16) if c not in used_channels and c != 9), 0)
    request = RequestAnswer(
        phrase=phrase,
        start_ticks=phrase.end_ticks,
        end_ticks=phrase.end_ticks + bars * source.bar_ticks,
        tag="offline",
        seed=seed,
        key=key.as_pair() if key else None,
        # the file's meter wins over a preset's: the answer continues the input's bars
        settings={"output_channel": channel, "temperature": CONTINUE_TEMPERATURE, **(settings or {}),
                  "beats_per_bar": source.beats_per_bar,
                  "beat_unit": source.beat_unit},
    )
    return list(generator.stream(request))


def _generate_piece(args: argparse.Namespace, output: Path, generator: Generator) -> int:
    """`companion generate generate`: no input; a tempo track and the `companion` track."""
    from companion.offline.piece import DEFAULT_BPM, generate_file, write_generated
    from companion.presets.schema import STYLES

    if args.style and args.style not in STYLES:  # a usage mistake, before any model loads
        raise UsageError(f"--style {args.style}: `companion generate generate` plays {', '.join(STYLES)}; "
                         "drum styles are for `companion generate drums`")
    settings = {"temperature": args.temperature} if args.temperature else {}
    bpm = getattr(args, "bpm", None) or DEFAULT_BPM
    notes = generate_file(bars=args.bars, seed=args.seed, style=args.style or "folk", bpm=bpm, settings=settings,
                          generator=generator)
    write_generated(output, notes, bpm=bpm)
    print(f"wrote {output}: {len(notes)} generated notes on the 'companion' track ({args.bars} bars at {bpm:g} BPM)")
    return 0


def _preset_settings(preset: Preset) -> dict:
    """A preset's generator settings (engine settings over its extras), as the live engine would send them."""
    return {**preset.request_settings(), **dataclasses.asdict(preset.engine_settings())}


def replay_answers(sidecar: str | Path) -> list[Note]:
    """Every answer of a recorded take, generated again from its phrase, seed and settings, in order."""
    from companion.takes.replay import read_sidecar

    replay = read_sidecar(sidecar)
    warning = replay.checkpoint_warning()
    if warning:
        log.warning(warning)
    model = replay.model if replay.model in ("markov", "transformer") else "auto"
    with checkpoint_errors():  # the take's checkpoint, if it is there and asked for, must load
        generator, fallback = make_generator(model, Path(replay.checkpoint) if replay.checkpoint else None)
    if fallback:
        log.warning(fallback)
    cut = sum(1 for answer in replay.answers if answer.get("cut"))
    if cut:  # the live session stopped or softened them; the replay has no record of what played after that
        log.warning("%s: %d of the take's %d answers were stopped or ducked live (you played again, a panic); "
                    "the replay plays every answer whole", replay.path, cut, len(replay.answers))
    notes: list[Note] = []
    for request in replay.requests():  # in order: the Markov responder learns the phrases as it did live
        notes.extend(generator.stream(request))
    return notes


def generate_command(args: argparse.Namespace) -> int:
    """Dispatch `companion generate MODE`; bad input raises a CompanionError (exit 2)."""
    check_bars(args.bars)
    wanted_inputs = {"interpolate": 2, "generate": 0}.get(args.mode, 1)
    if args.mode == "generate" and args.inputs:
        raise InputFileError(f"`companion generate generate` plays on its own and takes no input file (got "
                             f"{' '.join(args.inputs)}); to continue a file use "
                             "`companion generate continue INPUT.mid`")
    if len(args.inputs) != wanted_inputs:
        raise InputFileError(f"`companion generate {args.mode}` takes {wanted_inputs} input file(s), "
                             f"got {len(args.inputs)}: {' '.join(args.inputs) or '(none)'}")
    output = Path(args.output)
    preset = None
    if args.preset:
        from companion.presets.preset import load_preset

        preset = load_preset(args.preset)
    settings = _preset_settings(preset) if preset else {}
    if args.temperature:
        settings["temperature"] = args.temperature
    # continue and generate play this model (vary/interpolate/harmonize have their own, --replay the take's)
    model = model_choice(args.model, args.checkpoint, preset.extras if preset else {})
    if args.mode == "generate":
        return _generate_piece(args, output, load_generator(*model))
    source = read_midi(args.inputs[0])
    if args.replay:
        if args.mode != "continue":
            raise InputFileError("--replay plays a take's answers again: use it with `companion generate continue "
                                 "TAKE.mid --replay TAKE.json -o OUT.mid`")
        notes = replay_answers(args.replay)
        write_with_answer(source, notes, output, replace_companion=True)
        print(f"wrote {output}: {len(notes)} notes of the take's answers, generated again")
        return 0
    markers: list[tuple[int, str]] = []
    if args.mode == "continue":
        notes = continue_file(source, bars=args.bars, seed=args.seed, generator=load_generator(*model),
                              settings=settings)
    else:
        from companion.offline import modes

        notes, then, markers = modes.run(args, source, settings)
        for other, start_ticks in then:  # interpolate's second input, as it is, after the steps
            append_input(source, other, start_ticks)
    if not notes:
        log.warning("the model produced no notes; the output holds the input only")
    write_with_answer(source, notes, output, markers=markers)
    print(f"wrote {output}: {len(notes)} generated notes on the 'companion' track"
          + (f", {len(markers)} chord symbols as markers" if markers else ""))
    return 0
