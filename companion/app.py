"""Builds a Runtime from the command line (ports, clock, model) and runs it headless or under the terminal UI."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from companion.core.engine import EngineSettings
from companion.errors import CheckpointError
from companion.live.clock import make_clock
from companion.live.runtime import Runtime, RuntimeConfig
from companion.live.scheduler import HAND_AHEAD_NS
from companion.midi.backends import find_loopback, list_backends
from companion.midi.ports import PortWatcher, jack_period_ns, open_input, open_output, pick_backend
from companion.presets.preset import DEFAULT_PRESET, ClockOptions, Preset, load_preset
from companion.takes.recording import TakeRecorder, default_takes_dir
from companion.worker.generators import model_choice
from companion.worker.process import ModelProcess

log = logging.getLogger("companion")
HARMONY_FIRST_S = 60.0  # harmonize mode: the model worker waits at most this long for the harmony model


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
        bpm_source="--bpm" if args.bpm else "preset" if clock.bpm else "default",
        send_clock=args.send_clock or clock.send,
        link_start_stop=clock.start_stop,
        model=model,
        checkpoint=checkpoint,
        record_dir=args.record,
        timed_output=getattr(args, "timed_output", None) is not False,  # on unless --no-timed-output
        in_name=args.in_name,
        out_name=args.out_name,
    )


def settings_from_args(args: argparse.Namespace, base: EngineSettings | None = None) -> EngineSettings:
    settings = base or EngineSettings()
    if args.seed is not None:
        settings = settings.replace(seed=args.seed)
    return settings


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
            # with timed output, input on the same frame map (the DAW's clock above all)
            port = open_input(backend, port=query, callback=callback, virtual_name=name,
                              frame_stamps=config.timed_output)
            watcher.watch(port)
            return port

        return open_with

    inputs = [input_factory(in_port, config.in_name)]
    if config.connect_in:
        inputs.append(input_factory(config.connect_in, "Companion In link"))
    names = {"backend": backend, "in": in_port or f"{config.in_name} (virtual)",
             "out": out_port or f"{config.out_name} (virtual)"}
    return inputs, outputs, names


def _with_windows_loopback(config: RuntimeConfig) -> RuntimeConfig:
    """Windows cannot make virtual ports: use the loopback ports made for Companion (loopMIDI or Windows MIDI
    Services), found by name; without them, opening the virtual port says what to do."""
    info = next(info for info in list_backends() if info.name == "winmm")
    found = find_loopback(info, config.in_name, config.out_name)
    if found is None:
        return config
    log.info("Windows loopback ports found: listening on %r, playing to %r", *found)
    return dataclasses.replace(config, in_port=found[0], out_port=found[1])


def checkpoint_file(checkpoint: str | None, model: str) -> Path | None:
    """The checkpoint to load. Under model "transformer" it must exist (checked now, before the worker starts);
    under "auto" a missing one means the Markov responder, with a warning from the worker."""
    if checkpoint is None:
        return None
    path = Path(checkpoint).expanduser()
    if model == "transformer" and not path.is_file():
        raise CheckpointError(f"{checkpoint}: no such checkpoint file; give the path of a .pt file made by "
                              "`companion train`, or leave the checkpoint out for the shipped one")
    return path


def build_runtime(config: RuntimeConfig, settings: EngineSettings, preset: Preset | None = None) -> Runtime:
    """Open the ports and the model the config names; every failure is a CompanionError that says what to do."""
    if config.clock == "link":
        from companion.midi.link import load_link

        load_link()  # a missing extra is one line that says how to install it, before any port opens
    backend = pick_backend(config.backend)
    if backend == "winmm" and config.in_port is None and config.out_port is None:
        config = _with_windows_loopback(config)
    watcher = PortWatcher(on_event=lambda event: None)
    inputs, outputs, names = _open_ports(backend, config, watcher, config.in_port, config.out_port)

    def choose(in_port: str | None, out_port: str | None, new_backend: str | None) -> tuple:
        chosen = pick_backend(new_backend) if new_backend else backend
        return _open_ports(chosen, config, watcher, in_port, out_port)

    try:
        # The models load in their own process while the ports are already open (the log says when it is ready).
        generator = ModelProcess(config.model, checkpoint_file(config.checkpoint, config.model),
                                 preload_vae=settings.mode in ("variation", "morph"), start=False)
        # --record DIR records from the start; without it the record key saves into the default folder.
        recorder = TakeRecorder(config.record_dir) if config.record_dir else \
            TakeRecorder(default_takes_dir(), create=False)
        timed = config.timed_output and all(port.timed for port in outputs)
        runtime = Runtime(
            settings,
            inputs=inputs,
            outputs=outputs,
            generator=generator,
            clock=make_clock(config.clock, config.bpm, settings.beats_per_bar, settings.beat_unit,
                             start_stop=config.link_start_stop, propose_tempo=config.bpm_source != "default"),
            on_port_check=lambda: [(event.kind, event.port, event.text) for event in watcher.check()],
            send_clock=config.send_clock,  # not while the DAW's clock is followed (the runtime sees to it)
            preset=preset,
            recorder=recorder,
            record_from_start=bool(config.record_dir),
            # Our JACK client writes planned notes at their exact frame when handed over ahead (HAND_AHEAD_NS);
            # rtmidi's JACK delivers at period boundaries: sending half a period early centres notes on the beat.
            hand_ahead_ns=HAND_AHEAD_NS if config.timed_output else 0,
            send_ahead_ns=jack_period_ns() // 2 if backend == "jack" and not timed else 0,
            port_names=names,
            port_chooser=choose,
        )
    except BaseException:
        for port in outputs:
            port.close()
        if "generator" in locals():
            generator.close()
        raise
    generator.set_log(runtime.log)
    _start_models(runtime, generator, harmonize_first=settings.mode == "harmonize")
    if config.send_clock and config.clock == "external":
        runtime.log("warning", "--send-clock is ignored with --clock external: the DAW is the clock master")
    log.info(start_line(config, names, preset, runtime))
    return runtime


def start_line(config: RuntimeConfig, names: dict[str, str], preset: Preset | None, runtime: Runtime) -> str:
    """The one line saying how a session starts: ports and links, backend, preset, mode, model, clock, tempo."""
    links = "".join(f", also {word} {port!r}" for word, port in (("from", config.connect_in),
                                                                  ("to", config.connect_out)) if port)
    mode = runtime.engine.settings.mode
    source = config.bpm_source
    if source == "default" and preset is not None and preset.clock.bpm == config.bpm:
        source = "preset"
    if config.clock == "external":
        clock = f"following the MIDI clock on {names['in']!r} (until it runs: {config.bpm:g} BPM)"
    elif config.clock == "link" and source == "default":
        clock = f"Ableton Link clock (the session's tempo; alone: {config.bpm:g} BPM)"
    elif config.clock == "link":
        clock = f"Ableton Link clock ({config.bpm:g} BPM from {source}, proposed to the session once it is joined)"
    else:
        why = {"--bpm": "--bpm", "preset": f"preset {preset.id if preset else ''}'s tempo; --bpm changes it"}.get(
            source, "the default; --bpm changes it")
        clock = f"internal clock at {config.bpm:g} BPM ({why})" + (", sent as MIDI clock" if config.send_clock else "")
    return (f"listening on {names['in']!r}, playing to {names['out']!r}{links} ({names['backend']}); "
            f"preset {preset.id if preset else '(none)'}, {mode} mode, {runtime.answering_model} model; {clock}")


def _start_models(runtime: Runtime, models: ModelProcess, harmonize_first: bool) -> None:
    """Both ports are open: the models load in their own process now. In harmonize mode the harmony models (the
    chorale ones in their process, the chord model here) come first: two model loads at once on a small machine
    would delay the one the mode plays with. The harmony workers' modules (numpy) are imported off the start path,
    but before a switch to harmonize needs them on the engine thread."""

    def warm_imports() -> None:
        for module in ("companion.harmony.chord_worker", "companion.worker.harmony_process"):
            importlib.import_module(module)

    threading.Thread(target=warm_imports, name="companion-warm-import", daemon=True).start()
    if not harmonize_first:
        models.start()
        return

    def after_harmony() -> None:
        deadline = time.monotonic() + HARMONY_FIRST_S
        while runtime.harmony is None and time.monotonic() < deadline and not runtime.closed:
            time.sleep(0.05)
        if runtime.harmony is not None:
            runtime.harmony.wait_ready(max(0.0, deadline - time.monotonic()))
        if not runtime.closed:
            models.start()

    threading.Thread(target=after_harmony, name="companion-models-after-harmony", daemon=True).start()


def prepare_app(args: argparse.Namespace) -> Callable[[threading.Event], int]:
    """`companion run`: the session's ports open (its models loading); what runs it, headless or with its UI, until
    the event is set (SIGINT, SIGTERM, SIGHUP: a dropped ssh session, or another ending signal; `StopOnSignal`)
    or the UI it started quits; then all notes off. A UI may attach to a headless session (`companion attach`)."""
    from companion.live.session import run_session

    preset = load_preset(args.preset or DEFAULT_PRESET)
    config = config_from_args(args, preset)
    settings = settings_from_args(args, preset.engine_settings())
    runtime = build_runtime(config, settings, preset)
    control = Path(args.control) if getattr(args, "control", None) else None
    with_ui = not args.headless and _ui_available()  # the UI in a process of its own
    return lambda stop: run_session(runtime, stop, control=control, with_ui=with_ui)


def _ui_available() -> bool:
    """Textual is there (found without importing it: this process never loads the UI)."""
    import importlib.util

    if importlib.util.find_spec("textual") is None:
        log.warning("the terminal UI is not available in this build; running headless")
        return False
    return True
