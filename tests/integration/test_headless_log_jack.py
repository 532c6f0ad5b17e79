"""`companion run --headless` says how it runs: one line at start, one per answer (issue 15, point 10)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from midi_wire import play_at, repeated_cycles_in_log, unexplained_double_strikes

pytestmark = pytest.mark.jack


def test_headless_logs_its_setup_at_start_and_a_line_per_answer(jack_client, poll) -> None:
    tag = uuid.uuid4().hex[:8]
    name_in, name_out, synth = f"Companion In {tag}", f"Companion Out {tag}", f"synth-{tag}"
    client = jack_client(f"daw-{tag}").open_virtual_in(synth)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "companion", "run", "--headless", "--backend", "jack", "--in-name", name_in,
         "--out-name", name_out, "--connect-out", synth, "--preset", "trading-fours"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    try:
        assert poll(lambda: process.poll() is not None or "running headless" in (
            lines.append(process.stdout.readline()) or "".join(lines)), timeout_s=60)
        start = next(line for line in lines if "listening on" in line)
        for shown in (name_in, name_out, f"also to '{synth}'", "(jack)", "preset trading-fours",
                      "call_response mode", "model", "internal clock at", "BPM"):
            assert shown in start, (shown, start)
        client.connect_out(name_in)
        beat_ns = 250_000_000
        t0 = time.monotonic_ns() + beat_ns
        notes = [(t0 + i * beat_ns, p) for i, p in enumerate([60, 62, 64, 65, 67, 65, 64, 62])]
        play_at(client.send, [(t, [0x90, p, 90]) for t, p in notes] + [(t + beat_ns // 2, [0x80, p, 0])
                                                                      for t, p in notes])
        assert poll(lambda: client.messages(), timeout_s=20), "no answer came back"
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=20)
    log = "".join(lines) + rest
    assert unexplained_double_strikes(client.messages(), repeated_cycles_in_log(log)) == [], log
    answers = [line for line in log.splitlines() if ": bar" in line and "model (seed" in line]
    assert answers and "answer-" in answers[0] and "notes heard" in answers[0], log
