"""Over real JACK ports: the model worker killed mid-answer, and a machine kept busy beside the app, must leave
the music going, every note on time (loosely) and every note closed."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from midi_wire import (
    ON_TIME_BOUND_MS,
    early_bound_ms,
    heard_answer,
    left_sounding,
    note_ons,
    play_phrase,
    repeated_cycles,
    unexplained_double_strikes,
)

from companion.app import build_runtime
from companion.bench.load import busy_processes
from companion.core.engine import EngineSettings
from companion.live.runtime import RuntimeConfig

pytestmark = pytest.mark.jack

# (pitch, onset, duration) in ticks from the phrase's first bar line: a one-bar D-major phrase in 8ths.
PHRASE = [(62, 0, 200), (66, 240, 200), (69, 480, 200), (71, 720, 200), (69, 960, 200), (66, 1200, 200),
          (64, 1440, 200), (62, 1680, 200)]
READY_S = 60.0


def _runtime(bpm: float, bars: int):  # noqa: ANN202 - a Runtime
    tag = uuid.uuid4().hex[:8]
    settings = EngineSettings(seed=5, silence_beats=1.0, response_bars=bars, response_start="bar")
    runtime = build_runtime(RuntimeConfig(backend="jack", bpm=bpm, model="markov", in_name=f"Companion In {tag}",
                                          out_name=f"Companion Out {tag}"), settings)
    lines: list[str] = []
    runtime.add_log_listener(lambda level, text: lines.append(text))
    return runtime.start(), f"Companion In {tag}", f"Companion Out {tag}", lines


def test_killing_the_model_worker_mid_answer_keeps_the_music_going(jack_client) -> None:
    runtime, name_in, name_out, lines = _runtime(bpm=160.0, bars=4)
    try:
        assert runtime.generator.wait_ready(READY_S), lines
        client = jack_client("daw").connect_out(name_in).connect_in(name_out)
        answer_bar, answer_end = play_phrase(runtime, client.send, PHRASE)
        timebase = runtime.clock.timebase()
        assert client.wait_for(lambda m: note_ons(m), timeout_s=10), "no answer began"
        killed_pid, killed_ns = runtime.generator.pid, time.monotonic_ns()
        os.kill(killed_pid, signal.SIGKILL)
        end_ns = timebase.ns_at(answer_end)
        client.wait_for(lambda m: time.monotonic_ns() > end_ns + 300_000_000, timeout_s=20)
        messages = client.messages()
        after = [t for _, t in note_ons(messages) if t > killed_ns + 100_000_000]
        assert after, "the answer stopped when the model worker died"
        assert left_sounding(messages) == 0, "a note was left sounding"
        assert unexplained_double_strikes(messages, repeated_cycles()) == []
        assert any("Markov responder answers" in line for line in lines), lines
        assert runtime.generator.wait_ready(READY_S) and runtime.generator.pid != killed_pid, "no new worker"
        assert runtime.error is None and not runtime.closed
    finally:
        runtime.close()


def test_busy_processes_beside_the_app_leave_every_note_on_time_and_closed(jack_client) -> None:
    """Two CPU-bound processes per test (one per core here) at normal priority while a phrase is answered."""
    runtime, name_in, name_out, lines = _runtime(bpm=150.0, bars=2)
    try:
        assert runtime.generator.wait_ready(READY_S), lines
        client = jack_client("daw").connect_out(name_in).connect_in(name_out)
        with busy_processes(os.cpu_count() or 2):
            answer_bar, answer_end = play_phrase(runtime, client.send, PHRASE)
            messages = heard_answer(runtime, client, answer_bar, answer_end, early_bound_ms(timed=runtime.timed_output))
        late_ms = runtime.scheduler.lateness_stats()["max_ns"] / 1e6  # each send against its own deadline
        assert late_ms <= ON_TIME_BOUND_MS, f"a note went out {late_ms:.2f} ms late"
        assert runtime.scheduler.counts["skipped_late"] == 0 and runtime.generation.late_notes == 0
        assert left_sounding(messages) == 0
        assert unexplained_double_strikes(messages, repeated_cycles()) == []
    finally:
        runtime.close()
