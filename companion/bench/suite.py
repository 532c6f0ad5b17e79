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

from companion.bench.load import MAX_LOAD, busy_processes, load_label, mark, spin, verdict
from companion.core.engine import EngineSettings
from companion.core.events import PPQ, Note
from companion.live.runtime import GIL_SWITCH_INTERVAL_S
from companion.live.scheduler import Scheduler
from companion.midi.clock import InternalClock
from companion.midi.loopback import LoopbackPorts
from companion.midi.realtime import lowest_realtime

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
    # One sleep, not a polling loop: a normal-priority thread that wakes to poll takes the interpreter lock,
    # and the real-time scheduler waits whenever that thread is preempted holding it (see bench_inversion).
    while (left_ns := end_ns - time.monotonic_ns()) > 0:
        time.sleep(left_ns / 1e9)
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
        with lowest_realtime():  # the player stands for a DAW's MIDI thread, not a normal-priority one of ours
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
    from companion.live.runtime import Runtime
    from companion.worker.generators import MarkovGenerator

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


MIN_ANSWERS = 3  # an answer takes about 2.5 s at 240 BPM; --seconds sets how many more (50 in about 125 s)


class _Borrowed:
    """A generator lent to a runtime that must not close it (the bench's one model worker, many runtimes)."""

    def __init__(self, generator: Any) -> None:
        self.name, self.stream, self.runs_elsewhere = generator.name, generator.stream, True


def bench_answers(seconds: float) -> Row:
    """Call and response end to end in-process: each answer's first note against the beat it was planned on."""
    return _answers(seconds, jack=False)


def bench_answers_ui(seconds: float) -> Row:
    """The same with the UI open in its own process, attached to each answer's runtime (as `companion run`)."""
    return _answers(seconds, jack=False, ui=True)


def bench_answers_jack(seconds: float) -> Row:
    """The same over JACK with `--no-timed-output` (each planned note sent when due, half a period early: it leaves
    at the start of JACK's next period; rtmidi's JACK always sends so); the error is measured where a DAW hears
    it, at the frame a listening client receives the note on."""
    return _answers(seconds, jack=True)


def bench_answers_jack_timed(seconds: float) -> Row:
    """The same as `companion run` plays on our JACK client by default (timed output): planned notes handed over
    ahead and written at their frame, input stamped at its frame."""
    return _answers(seconds, jack=True, timed=True)


def bench_answers_jack_timed_ui(seconds: float) -> Row:
    """The same with the UI open in its own process, attached to each answer's runtime (as `companion run`)."""
    return _answers(seconds, jack=True, timed=True, ui=True)


def _jack_wiring(timed: bool) -> Any:
    from companion.demo import Wiring
    from companion.live.scheduler import HAND_AHEAD_NS
    from companion.midi.ports import open_input, open_output

    client = f"companion-bench-{os.getpid()}"  # a name of its own: never another running companion's ports
    inputs = [lambda cb: open_input("jack", port=None, callback=cb, client_name=client, frame_stamps=timed)]
    outputs = [open_output("jack", port=None, client_name=client)]

    def player() -> Any:
        return open_output("jack", port=f"{client}:Companion In", client_name="bench", virtual_name="bench out")

    def listen(record: Callable[[list[int], int], None]) -> Any:
        port = open_input("jack", port=f"{client}:Companion Out", callback=record, client_name="bench",
                          virtual_name="bench in", frame_stamps=True)  # where in its period each note sits
        time.sleep(0.2)  # let JACK finish the connections
        return port

    return Wiring(inputs, outputs, player, listen, hand_ahead_ns=HAND_AHEAD_NS if timed and outputs[0].timed else 0)


UI_SECONDS_PER_ANSWER = 4.0  # the attached UI redraws this long: the phrase, the answer and its end (240 BPM)


def _answers(seconds: float, jack: bool, timed: bool = False, ui: bool = False) -> Row:
    from companion.demo import play_phrase
    from companion.worker.process import ModelProcess

    beside = None
    if ui:
        from companion.tui.bench_ui import ui_attached

        beside = lambda runtime: ui_attached(runtime, UI_SECONDS_PER_ANSWER)  # noqa: E731

    settings = EngineSettings(response_bars=1, silence_beats=0.5, response_start="beat")
    errors_ns: list[int] = []
    worker = ModelProcess()  # the models as the app runs them: in their worker process
    try:
        if not worker.wait_ready(120.0):
            raise ValueError(f"the model worker did not start ({'; '.join(worker.faults) or 'timed out'})")
        generator = _Borrowed(worker)  # one worker for every answer's runtime (a runtime closes what it owns)
        deadline = time.monotonic() + seconds
        tries = 0
        while time.monotonic() < deadline or (len(errors_ns) < MIN_ANSWERS and tries < 2 * MIN_ANSWERS):
            tries += 1
            with lowest_realtime():  # the player stands for a DAW's MIDI thread, as in _thru_roundtrip
                result = play_phrase(settings, 240.0, generator, ONE_BAR_PHRASE, _jack_wiring(timed) if jack else None,
                                     beside=beside)
            if result.first_note_error_ms is not None:
                errors_ns.append(abs(round(result.first_note_error_ms * 1e6)))
    finally:
        worker.close()
    if not jack:
        return {"measure": f"answer's first note vs its beat (|error|, 240 BPM, {generator.name} in its process"
                           f"{', UI attached' if ui else ''})",
                "target": "p99 <= 2 ms", **percentiles(errors_ns)}
    from companion.midi.ports import jack_period_ns

    period_ms = jack_period_ns() / 1e6
    how = (" (timed, the default)" if timed else ", --no-timed-output") + (", UI attached" if ui else "")
    return {"measure": f"answer's first note vs its beat over JACK{how} (|error| "
                       f"at the listener's frame, 240 BPM, period {period_ms:.2f} ms)",
            "target": f"p99 <= {period_ms + 2:.2f} ms (one period + 2 ms)",
            **percentiles(errors_ns)}


def bench_inversion(seconds: float) -> list[Row]:
    """Scheduler lateness with busy work beside it: none, a thread in the same process, or another process.

    The hypothesis (issue 14): the scheduler runs at real-time priority, but when a normal-priority thread of
    the same process holds the interpreter lock and is preempted by another program, the scheduler waits for
    it. If so, under load the thread row is late and the process row is not.
    """
    rows = []
    for where in ("nothing else in the process", "a busy normal-priority thread in the same process",
                  "the same busy work in another process"):
        stop = threading.Event()
        thread = threading.Thread(target=spin, args=(stop,), name="bench-busy", daemon=True)
        with busy_processes(1 if "another" in where else 0):
            if "thread" in where:
                thread.start()
            try:
                row = bench_scheduler(seconds)
            finally:
                stop.set()
                if thread.is_alive():
                    thread.join()
        rows.append({**row, "measure": f"scheduler lateness, {where}"})
    return rows


def bench_vae(seconds: float) -> list[Row]:
    """Phrase VAE: encode + decode of a 2-bar phrase on this CPU (target <= 30 ms), load, vary, morph."""
    from models.vae.phrase import bench_vae as measure

    figures = measure(runs=max(10, int(seconds * 5)))
    return [{"measure": f"VAE {name}", "value": f"{value:.2f} ms" if isinstance(value, float) else str(value),
             **({"target": "<= 30 ms", "ok": value <= 30.0} if name.startswith("encode_decode_2bar_ms_median")
                else {"target": ""})} for name, value in figures.items()]


# Each benchmark takes the seconds it may run and returns a row or rows; models load only when asked for.
SECTIONS: dict[str, list[str]] = {
    "latency": ["companion.bench.suite:bench_scheduler", "companion.bench.suite:bench_inprocess",
                "companion.bench.suite:bench_jack", "companion.bench.suite:bench_answers",
                "companion.bench.suite:bench_answers_ui",
                "companion.bench.suite:bench_answers_jack", "companion.bench.suite:bench_answers_jack_timed",
                "companion.bench.suite:bench_answers_jack_timed_ui",
                "companion.bench.suite:bench_cold_start"],
    "harmonizer": ["companion.bench.harmony:bench_harmony"],
    "transformer": ["companion.bench.transformer:bench_transformer"],
    "vae": ["companion.bench.suite:bench_vae"],
    "ui": ["companion.tui.bench_ui:bench_ui"],
    "inversion": ["companion.bench.suite:bench_inversion"],
    "link": ["companion.bench.link:bench_link"],  # joins a Link session: only when asked for, never in `all`
    "drums": ["companion.bench.drums:bench_drums"],
}


def _resolve(target: str) -> Callable[[float], Row | list[Row]]:
    import importlib

    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _cpu_times() -> list[int] | None:
    """The machine's CPU time so far by kind (Linux: /proc/stat's first line), or None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            return [int(field) for field in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


def _machine(before: list[int] | None = None) -> str:
    """This machine, and how busy it was (others' work: the 'quiet' rows are only as quiet as that). On a virtual
    machine the host may take CPU time from it ("steal", since `before`): timing tails move with it."""
    busy = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    after = _cpu_times()
    if before is not None and after is not None and sum(after) > sum(before):
        spent = [b - a for a, b in zip(before, after, strict=True)]
        busy += f", CPU time taken by the host (steal) during the run {100 * spent[7] / sum(spent):.1f} %"
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}{busy}"


def _format(rows: list[Row], before: list[int] | None = None) -> str:
    lines = [f"machine: {_machine(before)}", "",
             f"{'measure':72} {'load':>7} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  target"]
    for row in rows:
        head = f"{row['measure']:72} {row.get('load', ''):>7}"
        if "error" in row:
            lines.append(f"{head} skipped: {row['error']}")
            continue
        target = f"{row.get('target') or '-'} {mark(row.get('ok'))}"
        extra = row.get("value")
        if extra is not None:
            lines.append(f"{head} {extra}  {target}")
            continue
        skipped = f", {row['skipped_late']} skipped" if row.get("skipped_late") else ""
        lines.append(f"{head} {row['n']:>6} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} "
                     f"{row['max_ms']:>8.3f}  {target}{skipped}")
    missed = [row for row in rows if row.get("ok") is False]
    lines += ["", f"{len(missed)} target(s) missed" if missed else "every target met"]
    return "\n".join(lines)


MAX_SECONDS = 3600.0
MIN_SECONDS = 0.5  # shorter runs time too few notes to give a figure


def bench_command(what: list[str], *, as_json: bool, seconds: float, load: int = 0) -> int:
    """Run the named sections, quiet and then (with `load`) beside that many CPU-bound processes; the names,
    --seconds and --load are checked first (a UsageError, exit 2)."""
    from companion.errors import UsageError, check_range

    names = [n for n in SECTIONS if n != "link"] if "all" in what else what
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise UsageError(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(SECTIONS)} or all")
    check_range("--seconds", seconds, MIN_SECONDS, MAX_SECONDS, " (how long each timing run lasts)")
    check_range("--load", load, 0, MAX_LOAD, " (CPU-bound processes started beside the loaded run)")
    rows: list[Row] = []
    before = _cpu_times()
    for name in names:
        for level in (0, load) if load else (0,):
            with busy_processes(level):
                for target in SECTIONS[name]:
                    rows.extend({**row, "load": load_label(level), "ok": verdict(row)}
                                for row in _run_one(target, seconds))
    print(json.dumps({"machine": _machine(before), "results": rows}, indent=2) if as_json else _format(rows, before))
    return 0


def _run_one(target: str, seconds: float) -> list[Row]:
    from companion.errors import CompanionError

    bench = _resolve(target)
    try:
        result = bench(seconds)
    except (CompanionError, ValueError) as err:  # e.g. no JACK server, no checkpoint: say so, go on
        message = getattr(err, "message", str(err))
        return [{"measure": (bench.__doc__ or target).splitlines()[0], "error": message}]
    return result if isinstance(result, list) else [result]


COLD_START_TARGET_S = 1.5


def bench_cold_start(seconds: float) -> Row:
    """`companion run --headless --backend jack` from nothing until both of its ports exist on the JACK server."""
    import signal
    import subprocess

    from companion.midi.jack import PORT_IS_INPUT, PORT_IS_OUTPUT, JackClient

    watcher = JackClient.acquire(f"bench-watch-{os.getpid()}")
    samples: list[int] = []
    try:
        deadline = time.monotonic() + seconds
        while not samples or (time.monotonic() < deadline and len(samples) < 5):
            tag = f"bench{os.getpid()}-{len(samples)}"  # names of its own: the last run's ports may linger
            names = {f"{tag} In": PORT_IS_INPUT, f"{tag} Out": PORT_IS_OUTPUT}
            started = time.monotonic_ns()
            proc = subprocess.Popen([sys.executable, "-m", "companion", "run", "--headless", "--backend", "jack",
                                     "--in-name", f"{tag} In", "--out-name", f"{tag} Out"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                while proc.poll() is None and time.monotonic_ns() - started < 30e9:
                    seen = [any(p.endswith(":" + name) for p in watcher.ports(flags)) for name, flags in names.items()]
                    if all(seen):
                        samples.append(time.monotonic_ns() - started)
                        break
                    time.sleep(0.005)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    finally:
        watcher.release()
    if not samples:
        return {"measure": "cold start to both ports", "error": "the ports never appeared"}
    return {"measure": "cold start: `companion run --headless` until both JACK ports exist",
            "target": f"max <= {COLD_START_TARGET_S * 1e3:g} ms", **percentiles(samples)}
