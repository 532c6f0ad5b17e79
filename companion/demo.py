"""`companion demo`: a built-in phrase played through the real engine over an in-process loopback, answer saved."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from companion.core.engine import EngineSettings
from companion.core.events import PPQ, Note
from companion.core.notes import notes_from_wire
from companion.core.timebase import Timebase
from companion.files.midifile import write_take
from companion.live.runtime import Runtime
from companion.midi.clock import InternalClock
from companion.midi.loopback import LoopbackPorts
from companion.worker.generators import Generator, answering_model, make_generator

HARMONY_LOAD_S = 60.0
_E, _Q, _DQ, _H = PPQ // 2, PPQ, PPQ * 3 // 2, PPQ * 2
# A two-bar D-major folk phrase (pitch, onset, duration in ticks from its first bar line), slightly humanized.
DEMO_PHRASE: tuple[tuple[int, int, int], ...] = (
    (62, 0, _E), (66, _E + 4, _E), (69, _Q, _Q - 10), (71, 2 * _Q - 6, _E), (69, 2 * _Q + _E, _E),
    (66, 3 * _Q + 3, _Q - 20), (64, 4 * _Q, _E), (66, 4 * _Q + _E - 5, _E), (67, 5 * _Q, _DQ - 30),
    (64, 6 * _Q + _E, _E), (62, 7 * _Q, _Q),
)


@dataclass
class DemoResult:
    """What was played and what came back, in ticks of the session's clock, plus timing figures."""

    phrase: list[Note]
    answer: list[Note]
    timebase: Timebase
    answer_start_ticks: int | None  # the beat the answer was planned on
    first_note_error_ms: float | None  # the answer's first note: arrival minus the time it was planned for
    sounding_at_end: int  # notes left on at the end: must be 0
    generator: str


def _wait_until(deadline_ns: int, stop: threading.Event) -> None:
    """Absolute-deadline wait for the demo's player: sleep most of the way, spin the last half millisecond."""
    while (left := deadline_ns - time.monotonic_ns()) > 500_000:
        if stop.wait((left - 500_000) / 1e9):
            return
    while time.monotonic_ns() < deadline_ns:
        pass


@dataclass
class Wiring:
    """The ports a phrase goes through: the runtime's inputs (factories of its callback) and outputs, the player's
    output into it (opened once the runtime runs), a listener's input on its output (opened with the recording
    callback), and how far ahead planned notes go to a timed output (0: none)."""

    inputs: list[Callable]
    outputs: list[Any]
    player: Callable[[], Any]
    listen: Callable[[Callable[[list[int], int], None]], Any]
    hand_ahead_ns: int = 0


def loopback_wiring() -> Wiring:
    to_engine, from_engine = LoopbackPorts("Companion In"), LoopbackPorts("Companion Out")
    return Wiring([to_engine.open_input], [from_engine.open_output()], to_engine.open_output, from_engine.open_input)


def play_phrase(settings: EngineSettings, bpm: float, generator: Generator,
                phrase: Sequence[tuple[int, int, int]] = DEMO_PHRASE, wiring: Wiring | None = None,
                beside: Callable[[Runtime], AbstractContextManager[Any]] | None = None) -> DemoResult:
    """Run the real runtime (on loopback ports unless wired otherwise): play `phrase` in, record what comes out.
    `beside(runtime)` is entered once the runtime runs and left after the answer (a bench attaches a UI there)."""
    wiring = wiring or loopback_wiring()
    received: list[tuple[int, list[int]]] = []
    lock = threading.Lock()

    def record(data: list[int], time_ns: int) -> None:
        with lock:
            received.append((time_ns, data))

    recorder = wiring.listen(record)
    clock = InternalClock(bpm, beats_per_bar=settings.beats_per_bar)
    runtime = Runtime(settings, inputs=wiring.inputs, outputs=wiring.outputs, generator=generator, clock=clock,
                      hand_ahead_ns=wiring.hand_ahead_ns)
    stop = threading.Event()
    with runtime, beside(runtime) if beside is not None else nullcontext():
        player = wiring.player()
        if settings.mode == "harmonize":  # the harmonizer loads on its own thread: play once it listens
            while runtime.harmony is None and not stop.wait(0.005):
                pass
            runtime.harmony.wait_ready(HARMONY_LOAD_S)
        timebase = clock.timebase()
        first_bar = timebase.next_bar(timebase.ticks_at(time.monotonic_ns()) + timebase.beat_ticks)
        events = sorted(
            [(first_bar + onset, 1, [0x90, pitch, 90]) for pitch, onset, _ in phrase]
            + [(first_bar + onset + duration, 0, [0x80, pitch, 0]) for pitch, onset, duration in phrase]
        )
        played = [Note(p, 90, first_bar + on, d) for p, on, d in phrase]
        for ticks, _, data in events:
            _wait_until(timebase.ns_at(ticks), stop)
            player.send(data)
        phrase_end = max(n.end_ticks for n in played)
        # Wait for the engine's own plan (the answer's beat), then until the answer is over.
        planned_deadline = timebase.ns_at(phrase_end + round(settings.silence_beats * settings.beat_ticks)
                                          + 2 * settings.bar_ticks)
        while not runtime.planned_answers and time.monotonic_ns() < planned_deadline:
            stop.wait(0.005)
        start = runtime.planned_answers[0][1] if runtime.planned_answers else None
        answer_end = runtime.planned_answers[0][2] if start is not None else phrase_end
        _wait_until(timebase.ns_at(answer_end) + 300_000_000, stop)
    recorder.close()
    player.close()
    answer, left = notes_from_wire(received, timebase.ticks_at)
    sounding = len(left)
    first_error = None
    # the answer's first note against the tick it was planned on (an answer may begin with a rest)
    planned = sorted((t, pitch) for _, pitch, t in runtime.sent_note_ons if start is not None and t >= start)
    if answer and planned:
        ticks, pitch = planned[0]
        due_ns = timebase.ns_at(ticks)
        heard = [t for t, d in received if d[0] & 0xF0 == 0x90 and d[2] > 0 and d[1] == pitch and t > due_ns - 50e6]
        first_error = (min(heard) - due_ns) / 1e6 if heard else None
    return DemoResult(played, answer, timebase, start, first_error, sounding, generator.name)


def demo_command(args: argparse.Namespace) -> int:
    settings = EngineSettings(mode=args.mode, seed=args.seed)
    generator, warning = make_generator("auto")
    if warning:
        print(f"note: {warning}")
    bar_s = settings.beats_per_bar * 60.0 / args.bpm
    model = answering_model(settings.mode, generator, settings.harmony_style)
    print(f"playing a 2-bar phrase at {args.bpm:g} BPM into the engine in {settings.mode} mode ({model} model); "
          f"the answer follows (about {4 + settings.response_bars + 1} bars, {bar_s * 7:.0f} s)...")
    result = play_phrase(settings, args.bpm, generator)
    origin = min(n.start_ticks for n in result.phrase) - result.timebase.bar_ticks
    shift = [(name, [Note(n.pitch, n.velocity, n.start_ticks - origin, n.duration_ticks, n.channel) for n in notes])
             for name, notes in (("player", result.phrase), ("companion", result.answer))]
    path = write_take(args.output, shift, args.bpm, settings.beats_per_bar, settings.beat_unit)
    if not result.answer:
        print("no answer came back")
    elif result.first_note_error_ms is not None:
        print(f"answered {len(result.answer)} notes; "
              f"first note {result.first_note_error_ms:+.2f} ms from its planned time")
    else:  # harmonize: no planned answer, harmony under each melody note as it is played
        print(f"answered {len(result.answer)} notes under the phrase's notes as they were played")
    print(f"notes left sounding: {result.sounding_at_end}")
    print(f"wrote {path} (tracks: player, companion)")
    return 0 if result.answer and result.sounding_at_end == 0 else 1
