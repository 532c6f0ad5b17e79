"""The `companion` command line: run, ports, presets, generate, train, eval, bench, demo."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from companion.errors import CompanionError, UsageError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C

# `companion train/eval KIND ...` hand their arguments to the model's own entry point.
# `companion train|eval MODEL`: the module whose train_main / eval_main runs it (a model's training and evaluation
# live beside it, never imported back by it).
MODEL_ENTRY_POINTS = {
    "transformer": "models.continuation.model",
    "harmonizer": "models.chorale.train",
    "harmony": "models.chords.cli",
    "vae": "models.vae.train",
    "drums": "models.drums.cli",
}
EVAL_ENTRY_POINTS = {
    "transformer": "models.continuation.evaluate",
    "harmonizer": "models.chorale.evaluate",
    "harmony": "models.chords.cli",
    "vae": "models.vae.evaluate",
    "drums": "models.drums.cli",
    "continuation": "companion.offline.continuation_eval",  # eval only: how answers compare with baselines
}
GENERATE_MODES = ("continue", "harmonize", "vary", "interpolate", "generate", "drums")


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", metavar="NAME|PATH", help="session preset to start with")
    p.add_argument("--headless", action="store_true", help="no terminal UI; log to stderr; stop with Ctrl-C")
    p.add_argument("--backend", default="auto", choices=["auto", "alsa", "jack", "coremidi", "winmm"])
    p.add_argument("--in-port", metavar="NAME", help="listen on an existing port (substring) instead of 'Companion In'")
    p.add_argument("--out-port", metavar="NAME", help="play to an existing port (substring) instead of 'Companion Out'")
    p.add_argument("--connect-in", metavar="PORT", help="also connect this existing output port to 'Companion In'")
    p.add_argument("--connect-out", metavar="PORT", help="also connect 'Companion Out' to this existing input port")
    p.add_argument("--in-name", default="Companion In", metavar="NAME",
                   help="name of the virtual input port (run two companions side by side)")
    p.add_argument("--out-name", default="Companion Out", metavar="NAME", help="name of the virtual output port")
    p.add_argument("--bpm", type=_positive_float("--bpm", 20, 400),
                   help="tempo of the internal clock (default: the preset's, else 120; with Link: of a session "
                        "Companion starts)")
    p.add_argument("--clock", choices=["internal", "external", "link"],
                   help="internal clock, follow the DAW's MIDI clock, or join an Ableton Link session")
    p.add_argument("--send-clock", action="store_true", help="send MIDI clock as master (internal clock or Link)")
    p.add_argument("--timed-output", action=argparse.BooleanOptionalAction, default=None,
                   help="JACK (Companion's own client): planned notes and MIDI clock pulses handed over ahead and "
                        "written at their exact frame (the default); --no-timed-output sends them when due, as "
                        "other backends do (docs/ARCHITECTURE.md)")
    p.add_argument("--record", metavar="DIR", help="save every take as MIDI + JSON in DIR")
    p.add_argument("--control", metavar="PATH", help="the session socket a UI attaches to (default: per user)")
    p.add_argument("--seed", type=_seed, help="seed for the answers (deterministic)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _positive_float(flag: str, low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        from companion.errors import UsageError, check_range

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} wants a number, got {text!r}") from None
        try:
            check_range(flag, value, low, high)
        except UsageError as err:
            raise argparse.ArgumentTypeError(err.message) from None
        return value

    return parse


def _seed(text: str) -> int:
    """--seed: a whole number 0..SEED_MAX (answer n of a session uses seed + n)."""
    from companion.core.settings import SEED_MAX

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed wants a whole number, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"--seed must be between 0 and {SEED_MAX}, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from companion.core.engine import available_modes

    parser = argparse.ArgumentParser(prog="companion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the live companion (default)")
    _add_run_arguments(run)
    # `companion` alone is `companion run`: its options are shown with the top-level help as well.
    parser.epilog = "`companion [OPTIONS]` is `companion run [OPTIONS]`; its " + run.format_help().split("\n\n", 1)[1]
    sub.add_parser("attach", help="the terminal UI for a running session").add_argument("--control", metavar="PATH")
    p = sub.add_parser("ports", help="list MIDI backends and ports")
    p.add_argument("--link", action="store_true", help="join the Ableton Link session a moment, count its peers")

    p = sub.add_parser("presets", help="list presets, or validate preset files")
    p.add_argument("--check", nargs="*", metavar="PATH", help="validate these preset files; exit 2 on any error")

    p = sub.add_parser("generate", help="file -> file generation")
    p.add_argument("mode", choices=GENERATE_MODES)
    p.add_argument("inputs", nargs="*", metavar="INPUT.mid", help="none for `generate`, two for `interpolate`")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT.mid")
    p.add_argument("--bars", type=int, default=4, help="length of the generated part in bars")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--preset", metavar="NAME|PATH")
    p.add_argument("--temperature", type=_positive_float("--temperature", 0.05, 5.0))
    p.add_argument("--distance", type=float, help="vary: how far from the input (0..1)")
    p.add_argument("--count", type=int, default=1, help="vary: how many variations")
    p.add_argument("--steps", type=int, default=4, help="interpolate: points from the first input to the second, "
                   "both included (4: the two inputs and 2 steps between them)")
    p.add_argument("--style", help="generate: folk, chorale, ...; drums: rock, funk, jazz, ...; harmonize: pad, block, "
                   "bass, comping, arpeggio (lead-sheet chords) or chorale (the chorale model)")
    p.add_argument("--bpm", type=_positive_float("--bpm", 20, 400), help="generate: tempo of the output (120)")
    p.add_argument("--model", choices=["auto", "markov", "transformer"],
                   help="continue/generate: the model (default: the preset's, else auto)")
    p.add_argument("--checkpoint", metavar="MODEL.pt",
                   help="continue/generate: the Transformer's checkpoint (default: the preset's, else the shipped one)")
    p.add_argument("--replay", metavar="SIDECAR.json", help="reuse the settings recorded with a take")

    for name in ("train", "eval"):
        p = sub.add_parser(name, help=f"{name} a model ({', '.join(MODEL_ENTRY_POINTS)})")
        kinds = EVAL_ENTRY_POINTS if name == "eval" else MODEL_ENTRY_POINTS
        p.add_argument("model", choices=sorted(kinds))
        p.add_argument("args", nargs=argparse.REMAINDER, help="options passed to the model's own command")

    p = sub.add_parser("bench", help="measure latency and speed; prints a table")
    p.add_argument("what", nargs="*", default=["latency"],
                   help="latency, harmonizer, transformer, vae, ui, inversion, drums or all")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--seconds", type=float, default=10.0, help="how long each timing run lasts")
    p.add_argument("--load", type=int, default=0, metavar="N", help="run again beside N CPU-bound processes")

    p = sub.add_parser("demo", help="play a built-in phrase through the real engine, write the answer to a MIDI file")
    p.add_argument("-o", "--output", default="companion-demo.mid")
    p.add_argument("--bpm", type=_positive_float("--bpm", 20, 400), default=120.0)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--mode", default="call_response", choices=available_modes(), help="the engine mode that answers")
    return parser


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    command = args.command or "run"
    if command == "run":
        from companion.live.stop_signals import StopOnSignal
        from companion.midi.realtime import lowest_realtime

        with StopOnSignal() as stopping:  # from before the ports open: a signal then still ends the session cleanly
            with lowest_realtime():  # imports and ports at real-time priority: both ports soon beside busy programs
                from companion.app import prepare_app

                run = prepare_app(args)
            return run(stopping.event)
    if command == "attach":
        from companion.tui.attach import attach_command

        return attach_command(args.control)
    if command == "ports":
        from companion.midi.link import link_status
        from companion.midi.ports import format_backends

        print(format_backends())
        print(f"Ableton Link (--clock link): {link_status(join=args.link)}")
        return EXIT_OK
    if command == "presets":
        from companion.presets.preset import presets_command

        if args.check == []:
            raise UsageError("presets --check: give the preset files (or names) to check, e.g. "
                             "`companion presets --check my-set.toml`; `companion presets` lists them")
        return presets_command(args.check)
    if command == "generate":
        from companion.files.midifile import check_output
        from companion.offline.generate import generate_command

        check_output(args.output, [*args.inputs, *([args.replay] if args.replay else [])])
        return generate_command(args)
    if command in ("train", "eval"):
        import importlib

        module = importlib.import_module((EVAL_ENTRY_POINTS if command == "eval" else MODEL_ENTRY_POINTS)[args.model])
        entry = getattr(module, f"{command}_main")
        return int(entry(list(args.args)))
    if command == "bench":
        from companion.bench.suite import bench_command

        return bench_command(args.what, as_json=args.json, seconds=args.seconds, load=args.load)
    if command == "demo":
        from companion.demo import demo_command
        from companion.files.midifile import check_output

        check_output(args.output)  # before the phrase plays, not after
        return demo_command(args)
    parser.error(f"unknown command {command!r}")
    return EXIT_BAD_INPUT


def parse_args(argv: Sequence[str], parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The command line as `companion` reads it (a usage error exits 2 with argparse's message)."""
    argv = list(argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]  # `companion --headless` means `companion run --headless`
    return (parser or build_parser()).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(sys.argv[1:] if argv is None else argv, parser)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _dispatch(args, parser)
    except CompanionError as err:
        print(f"companion: {err.title}: {err.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # Ctrl-C (headless and the UI stop on their own and exit 0)
        print(f"\ncompanion {args.command or 'run'}: stopped by Ctrl-C", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
