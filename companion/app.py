"""Builds a Runtime from the command line (ports, clock, model) and runs it headless or under the terminal UI."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from companion.core.engine import EngineSettings
from companion.generators import make_generator
from companion.midi.clock import InternalClock, MidiClockFollower
from companion.midi.ports import PortWatcher, jack_period_ns, open_input, open_output, pick_backend
from companion.offline import model_choice
from companion.presets import DEFAULT_PRESET, ClockOptions, Preset, load_preset
from companion.recording import TakeRecorder, default_takes_dir
from companion.runtime import Runtime, RuntimeConfig

log = logging.getLogger("companion")


def config_from_args(args: argparse.Namespace, preset: Preset | None = None) -> RuntimeConfig:
    """Command-line flags win over the preset's [clock] and [model] tables."""
    clock = preset.clock if preset else ClockOptions()
    model, checkpoint = model_choice(None, None, preset.extras if preset else {})
    return RuntimeConfig(
        backend=args.backend,
        in_port=args.in_port,
        out_port=args.out_port,
        connect_in=args.connect_in,
        connect_out=args.connect_out,
        clock=args.clock or clock.source,
        bpm=args.bpm or clock.bpm or RuntimeConfig.bpm,  # a preset without a tempo starts at 120
        send_clock=args.send_clock or clock.send,
        model=model,
        checkpoint=checkpoint,
        record_dir=args.record,
        in_name=args.in_name,
        out_name=args.out_name,
    )


def settings_from_args(args: argparse.Namespace, base: EngineSettings | None = None) -> EngineSettings:
    settings = base or EngineSettings()
    if args.seed is not None:
        settings = settings.replace(seed=args.seed)
    return settings


def make_clock(config: RuntimeConfig, beats_per_bar: int) -> InternalClock | MidiClockFollower:
    if config.clock == "external":
        return MidiClockFollower(beats_per_bar=beats_per_bar, initial_bpm=config.bpm)
    return InternalClock(config.bpm, beats_per_bar=beats_per_bar)


def _open_ports(backend: str, config: RuntimeConfig, watcher: PortWatcher, in_port: str | None,
                out_port: str | None) -> tuple[list[Callable], list, dict[str, str]]:
    """The outputs opened, the inputs as factories of the runtime's callback, and names for the UI."""
    with ExitStack() as opened:
        outputs = [open_output(backend, port=out_port, virtual_name=config.out_name)]
        opened.callback(outputs[0].close)
        if config.connect_out:
            outputs.append(open_output(backend, port=config.connect_out, virtual_name="Companion Out link"))
            opened.callback(outputs[-1].close)
        for port in outputs:
            watcher.watch(port)
        opened.pop_all()

    def input_factory(query: str | None, name: str) -> Callable:
        def open_with(callback: Callable[[list[int], int], None]):  # noqa: ANN202
            port = open_input(backend, port=query, callback=callback, virtual_name=name)
            watcher.watch(port)
            return port

        return open_with

    inputs = [input_factory(in_port, config.in_name)]
    if config.connect_in:
        inputs.append(input_factory(config.connect_in, "Companion In link"))
    names = {"backend": backend, "in": in_port or f"{config.in_name} (virtual)",
             "out": out_port or f"{config.out_name} (virtual)"}
    return inputs, outputs, names


def build_runtime(config: RuntimeConfig, settings: EngineSettings, preset: Preset | None = None) -> Runtime:
    """Open the ports and the model the config names; every failure is a CompanionError that says what to do."""
    backend = pick_backend(config.backend)
    watcher = PortWatcher(on_event=lambda event: None)
    inputs, outputs, names = _open_ports(backend, config, watcher, config.in_port, config.out_port)

    def choose(in_port: str | None, out_port: str | None, new_backend: str | None) -> tuple:
        chosen = pick_backend(new_backend) if new_backend else backend
        return _open_ports(chosen, config, watcher, in_port, out_port)

    try:
        generator, warning = make_generator(config.model, Path(config.checkpoint) if config.checkpoint else None,
                                            preload_vae=settings.mode in ("variation", "morph"))
        # --record DIR records from the start; without it the record key saves into the default folder.
        recorder = TakeRecorder(config.record_dir) if config.record_dir else \
            TakeRecorder(default_takes_dir(), create=False)
        runtime = Runtime(
            settings,
            inputs=inputs,
            outputs=outputs,
            generator=generator,
            clock=make_clock(config, settings.beats_per_bar),
            on_port_check=lambda: [(event.kind, event.port, event.text) for event in watcher.check()],
            send_clock=config.send_clock and config.clock == "internal",
            preset=preset,
            recorder=recorder,
            record_from_start=bool(config.record_dir),
            # JACK delivers MIDI at period boundaries: sending half a period early centres notes on the beat.
            send_ahead_ns=jack_period_ns() // 2 if backend == "jack" else 0,
            port_names=names,
            port_chooser=choose,
        )
    except BaseException:
        for port in outputs:
            port.close()
        raise
    if warning:
        runtime.log("warning", warning)
    if config.send_clock and config.clock == "external":
        runtime.log("warning", "--send-clock is ignored with --clock external: the DAW is the clock master")
    log.info("MIDI backend %s: listening on %s, playing to %s", backend, names["in"], names["out"])
    return runtime


def run_headless(runtime: Runtime) -> int:
    """Run until SIGINT, SIGTERM or SIGHUP (a dropped ssh session), then all notes off; 0, or 1 if a thread failed."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    stop_signals = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {sig: signal.signal(sig, on_signal) for sig in stop_signals}
    try:
        runtime.start()
        log.info("running headless; press Ctrl-C to stop")
        while not stop.wait(0.2):
            if runtime.closed:
                break
    finally:
        runtime.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped; all notes off")
    return 0 if runtime.error is None else 1


def run_app(args: argparse.Namespace) -> int:
    """`companion run`: the terminal UI, or headless with --headless."""
    preset = load_preset(args.preset or DEFAULT_PRESET)
    config = config_from_args(args, preset)
    settings = settings_from_args(args, preset.engine_settings())
    runtime = build_runtime(config, settings, preset)
    if args.headless:
        return run_headless(runtime)
    try:
        from companion.tui.app import run_tui
    except ImportError:
        log.warning("the terminal UI is not available in this build; running headless")
        return run_headless(runtime)
    return run_tui(runtime)
