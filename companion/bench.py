"""`companion bench`: measures scheduler lateness, input-to-output latency and model speed; prints a table or JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from companion.core.engine import EngineSettings
from companion.core.events import PPQ, Note
from companion.midi.clock import InternalClock
from companion.midi.loopback import LoopbackPorts
from companion.runtime import GIL_SWITCH_INTERVAL_S
from companion.scheduler import Scheduler

Row = dict[str, Any]


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    """p50, p99 and max in milliseconds (nearest-rank)."""
    if not samples_ns:
        return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    ordered = sorted(samples_ns)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] / 1e6

    return {"n": len(ordered), "p50_ms": rank(0.50), "p99_ms": rank(0.99), "max_ms": ordered[-1] / 1e6}


def bench_scheduler(seconds: float) -> Row:
    """Notes every 16th at 160 BPM through the real scheduler thread to a null port: how late is each send?"""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    clock = InternalClock(160.0)
    sends: list[int] = []
    scheduler = Scheduler(lambda data: sends.append(time.monotonic_ns()), clock)
    scheduler.start()
    timebase = clock.timebase()
    start = timebase.next_beat(timebase.ticks_at(time.monotonic_ns()) + PPQ)
    step = PPQ // 4
    count = int(seconds * 160 / 60 * 4)
    scheduler.submit([Note(60 + i % 12, 80, start + i * step, step // 2) for i in range(count)], "bench")
    end_ns = timebase.ns_at(start + count * step + PPQ)
    while time.monotonic_ns() < end_ns:
        time.sleep(0.05)
    stats = scheduler.lateness_stats()
    scheduler.close()
    return {"measure": "scheduler lateness (160 BPM, 16ths, note-on and note-off)", "target": "p99 <= 1 ms",
            "n": stats["count"], "p50_ms": stats["p50_ns"] / 1e6, "p99_ms": stats["p99_ns"] / 1e6,
            "max_ms": stats["max_ns"] / 1e6}


PortOpener = Callable[[Callable[[list[int], int], None]], tuple[Callable[[list[int]], None], Callable[[], None]]]


def _thru_roundtrip(open_ports: PortOpener, count: int, gap_s: float) -> list[int]:
    """Send note-on/off pairs with thru on and time each from send to arrival at the receiver."""
    arrivals: dict[int, int] = {}
    got = threading.Condition()

    def on_receive(data: list[int], time_ns: int) -> None:
        if data[0] & 0xF0 == 0x90 and data[2] > 0:
            with got:
                arrivals[data[1]] = time_ns
                got.notify()

    send, close = open_ports(on_receive)
    samples: list[int] = []
    try:
        for i in range(count):
            pitch = 36 + i % 48
            with got:
                arrivals.pop(pitch, None)
            sent_ns = time.monotonic_ns()
            send([0x90, pitch, 100])
            with got:
                got.wait_for(lambda p=pitch: p in arrivals, timeout=0.5)
                if pitch in arrivals:
                    samples.append(arrivals[pitch] - sent_ns)
            send([0x80, pitch, 0])
            time.sleep(gap_s)
    finally:
        close()
    return samples


def _thru_runtime(inputs: list, outputs: list) -> Any:
    from companion.generators import MarkovGenerator
    from companion.runtime import Runtime

    settings = EngineSettings(thru=True, silence_beats=64.0, max_bars=None)
    return Runtime(settings, inputs=inputs, outputs=outputs, generator=MarkovGenerator(),
                   clock=InternalClock(120.0)).start()


def bench_inprocess(seconds: float) -> Row:
    """A note into the engine's input callback until it leaves the scheduler (loopback ports, thru)."""

    def open_ports(on_receive: Callable[[list[int], int], None]) -> tuple[Callable, Callable]:
        to_engine, from_engine = LoopbackPorts("Companion In"), LoopbackPorts("Companion Out")
        receiver = from_engine.open_input(on_receive)
        runtime = _thru_runtime([to_engine.open_input], [from_engine.open_output()])
        player = to_engine.open_output()
        return player.send, lambda: (runtime.close(), receiver.close())

    samples = _thru_roundtrip(open_ports, count=int(seconds * 50), gap_s=0.02)
    return {"measure": "input -> output in-process (engine + scheduler, thru)", "target": "-",
            **percentiles(samples)}


def bench_jack(seconds: float) -> Row:
    """A test client's note into `Companion In` until it arrives back from `Companion Out`, over JACK."""
    from companion.midi.ports import jack_period_ns, open_input, open_output
    from companion.midi.realtime import jack_priorities

    modes: list[str] = []

    def open_ports(on_receive: Callable[[list[int], int], None]) -> tuple[Callable, Callable]:
        client = f"companion-bench-{os.getpid()}"  # a name of its own: never another running companion's ports
        runtime = _thru_runtime([lambda cb: open_input("jack", port=None, callback=cb, client_name=f"{client}-in")],
                                [open_output("jack", port=None, client_name=f"{client}-out")])
        receiver = open_input("jack", port=f"{client}-out:Companion Out", callback=on_receive,
                              client_name="bench", virtual_name="bench in")
        player = open_output("jack", port=f"{client}-in:Companion In", client_name="bench", virtual_name="bench out")
        time.sleep(0.2)  # let JACK finish the connections before timing
        modes.append("real-time" if jack_priorities() else "JACK not real-time")  # the figure depends on it
        return player.send, lambda: (runtime.close(), receiver.close(), player.close())

    samples = _thru_roundtrip(open_ports, count=int(seconds * 50), gap_s=0.02)
    period_ms = jack_period_ns() / 1e6
    return {"measure": f"input -> output over JACK (period {period_ms:.2f} ms, {modes[0]})",
            "target": f"p99 <= {period_ms + 2:.2f} ms (one period + 2 ms)", **percentiles(samples)}


ONE_BAR_PHRASE = ((62, 0, 100), (66, 120, 100), (69, 240, 220), (74, 480, 200), (73, 720, 200),
                  (71, 960, 400), (69, 1440, 400))


MIN_ANSWERS = 50  # an answer takes about 2.5 s at 240 BPM: enough for a p99 that is not just the maximum


def bench_answers(seconds: float) -> Row:
    """Call and response end to end in-process: each answer's first note against the beat it was planned on."""
    from companion.demo import play_phrase
    from companion.generators import make_generator

    settings = EngineSettings(response_bars=1, silence_beats=0.5, response_start="beat")
    errors_ns: list[int] = []
    generator, _ = make_generator("auto")  # the model the app answers with (the Transformer when it loads)
    deadline = time.monotonic() + max(3 * seconds, 30.0)
    while time.monotonic() < deadline or len(errors_ns) < MIN_ANSWERS:
        result = play_phrase(settings, 240.0, generator, ONE_BAR_PHRASE)
        if result.first_note_error_ms is not None:
            errors_ns.append(abs(round(result.first_note_error_ms * 1e6)))
    return {"measure": f"answer's first note vs its beat (|error|, 240 BPM, {generator.name})",
            "target": "p99 <= 2 ms", **percentiles(errors_ns)}


def bench_vae(seconds: float) -> list[Row]:
    """Phrase VAE: encode + decode of a 2-bar phrase on this CPU (target <= 30 ms), load, vary, morph."""
    from models.phrase_vae import bench_vae as measure

    figures = measure(runs=max(10, int(seconds * 5)))
    return [{"measure": f"VAE {name}", "value": f"{value:.2f} ms" if isinstance(value, float) else str(value),
             "target": "<= 30 ms" if "encode" in name else ""} for name, value in figures.items()]


# Each benchmark takes the seconds it may run and returns a row or rows; models load only when asked for.
SECTIONS: dict[str, list[str]] = {
    "latency": ["companion.bench:bench_scheduler", "companion.bench:bench_inprocess", "companion.bench:bench_jack",
                "companion.bench:bench_answers"],
    "harmonizer": ["companion.harmony:bench_harmony"],
    "transformer": ["companion.bench_models:bench_transformer"],
    "vae": ["companion.bench:bench_vae"],
    "ui": ["companion.tui.bench_ui:bench_ui"],
}


def _resolve(target: str) -> Callable[[float], Row | list[Row]]:
    import importlib

    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _machine() -> str:
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def _format(rows: list[Row]) -> str:
    lines = [f"machine: {_machine()}", "",
             f"{'measure':64} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  target"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['measure']:64} skipped: {row['error']}")
            continue
        extra = row.get("value")
        if extra is not None:
            lines.append(f"{row['measure']:64} {extra}  {row.get('target', '')}")
            continue
        lines.append(f"{row['measure']:64} {row['n']:>6} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} "
                     f"{row['max_ms']:>8.3f}  {row.get('target', '')}")
    return "\n".join(lines)


MAX_SECONDS = 3600.0
MIN_SECONDS = 0.5  # shorter runs time too few notes to give a figure


def bench_command(what: list[str], *, as_json: bool, seconds: float) -> int:
    """Run the named sections; their names and --seconds are checked first (a UsageError, exit 2)."""
    from companion.errors import CompanionError, UsageError, check_range

    names = list(SECTIONS) if "all" in what else what
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise UsageError(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(SECTIONS)} or all")
    check_range("--seconds", seconds, MIN_SECONDS, MAX_SECONDS, " (how long each timing run lasts)")
    rows: list[Row] = []
    for name in names:
        for target in SECTIONS[name]:
            bench = _resolve(target)
            try:
                result = bench(seconds)
            except (CompanionError, ValueError) as err:  # e.g. no JACK server, no checkpoint: say so, go on
                message = getattr(err, "message", str(err))
                rows.append({"measure": (bench.__doc__ or target).splitlines()[0], "error": message})
                continue
            rows.extend(result if isinstance(result, list) else [result])
    print(json.dumps({"machine": _machine(), "results": rows}, indent=2) if as_json else _format(rows))
    return 0
