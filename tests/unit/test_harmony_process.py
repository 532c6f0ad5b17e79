"""The chorale models in their own process (issue 14): the same harmony as in-process, a note never waits for
them, and a process that dies, hangs or never loads leaves the harmony going (by rule) and is replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harmony_fakes import harmony_process_pids, poll

from companion.errors import CheckpointError
from companion.harmony.worker import load_harmonizers
from companion.worker.harmony_process import HarmonyProcess, RemoteHarmonizer

ROOT = Path(__file__).resolve().parents[2]
MELODY = [72, None, 74, 74, 76, 77, 79, None, 81, 50, 52, 55, 60, None, 96, 95, 72, 71, 69, 67]


@pytest.fixture()
def process(tiny_checkpoint: Path) -> Iterator[tuple[HarmonyProcess, list[tuple[str, str]]]]:
    logs: list[tuple[str, str]] = []
    harmony = HarmonyProcess(tiny_checkpoint, count=2, log_line=lambda level, text: logs.append((level, text)))
    harmony.start()
    yield harmony, logs
    harmony.close()


def step_when_ready(model: RemoteHarmonizer, soprano: int | None) -> tuple[int | None, int | None, int | None]:
    assert poll(model.chords_ready), "the harmony process sent no chords"
    voices = model.step(soprano)
    model.finish_step()
    return voices


def test_the_models_in_their_process_voice_each_note_as_the_same_model_here(
        process: tuple[HarmonyProcess, list], tiny_checkpoint: Path) -> None:
    """Same seed, same melody, same settings changes (each followed by `prepare`, as the pool does) and a step
    taken again under a new chord: the remote lookups give the in-process model's chords, octave folds and registers
    included; only the re-taken step was voiced by rule."""
    harmony, _ = process
    here = load_harmonizers(tiny_checkpoint, count=1)[0]
    remote = harmony.models[1]
    here.reset(5, position_in_beat=1)
    remote.reset(5, position_in_beat=1)
    for i, soprano in enumerate(MELODY):
        if i in (8, 12):  # settings change once the step's chords are built (one stopped part-way for a
            assert poll(remote.chords_ready)  # waiting operation draws fewer samples: another, equally good chord)
        if i == 8:  # a key lock, then a temperature, as the pool hands them on between notes
            here.set_key_lock({0, 2, 4, 5, 7, 9, 11})
            remote.set_key_lock({0, 2, 4, 5, 7, 9, 11})
        if i == 12:
            here.temperature = remote.temperature = 1.7
        here.prepare()  # as the pool does after a settings change (a no-op otherwise)
        assert step_when_ready(remote, soprano) == here.step(soprano), f"note {i} ({soprano})"
        here.finish_step()
        if i == 14:  # a left-hand chord just after this note (it moved the octave fold): the step is taken again
            assert poll(remote.chords_ready)
            here.set_key_lock({7, 11, 2})
            remote.set_key_lock({7, 11, 2})
            here.prepare()  # both build the chords under the new lock first, as the process may before the redo
            assert poll(remote.chords_ready)
            here.redo_step(soprano)
            here.finish_step()
            remote.redo_step(soprano)  # voiced here by rule (the chord played); the model there takes it again
            remote.finish_step()
        assert remote.octave_shift_semitones == here.octave_shift_semitones
    assert remote.fallbacks == 1  # the re-taken step


def test_a_note_that_comes_before_its_chords_is_voiced_at_once_by_rule(process: tuple[HarmonyProcess, list]) -> None:
    """The process is held (SIGSTOP): the note still gets a chord at once, in range and under the melody, from
    the chord that sounds or the key; when the process runs again its chords come back and are used."""
    harmony, _ = process
    model = harmony.models[0]
    model.reset(0)
    model.set_key_lock({0, 2, 4, 5, 7, 9, 11})
    step_when_ready(model, 72)
    assert harmony.pid is not None
    os.kill(harmony.pid, signal.SIGSTOP)
    try:
        started = time.perf_counter()
        alto, tenor, bass = model.step(74)
        took = time.perf_counter() - started
        model.finish_step()
    finally:
        os.kill(harmony.pid, signal.SIGCONT)
    assert model.fallbacks == 1 and took < 0.5  # no wait for the held process (a generous bound, not a timing)
    for voice, pitch in ((1, alto), (2, tenor), (3, bass)):
        lo, hi = model.voice_ranges[voice]
        assert pitch is not None and lo <= pitch <= hi and pitch < 74
    assert {p % 12 for p in (alto, tenor, bass)} | {74 % 12} <= {0, 2, 4, 5, 7, 9, 11}
    step_when_ready(model, 76)
    assert model.fallbacks == 1


def test_a_killed_process_leaves_the_harmony_going_and_a_new_one_takes_over(
        process: tuple[HarmonyProcess, list]) -> None:
    harmony, logs = process
    model = harmony.models[0]
    model.reset(3)
    for soprano in (72, 74, 76):
        step_when_ready(model, soprano)
    first = harmony.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert poll(lambda: harmony.pid != first and harmony.faults)
    voices = model.step(77)  # meanwhile: by rule, at once
    model.finish_step()
    assert all(v is not None for v in voices)
    assert any(level == "warning" and "voiced by rule" in text for level, text in logs), logs
    assert poll(lambda: harmony.pid is not None and harmony.pid != first)
    assert poll(lambda: any("a new harmony worker process" in text for _, text in logs))
    before = model.fallbacks
    for soprano in (79, 77, 76):
        step_when_ready(model, soprano)  # the new process's chords, after the model started afresh there
    assert model.fallbacks == before and harmony.restarts == 1
    assert first not in harmony_process_pids()


def test_a_hung_process_is_replaced(tiny_checkpoint: Path) -> None:
    logs: list[tuple[str, str]] = []
    harmony = HarmonyProcess(tiny_checkpoint, count=1, hang_s=0.3,
                             log_line=lambda level, text: logs.append((level, text)))
    model = harmony.start()[0]
    try:
        model.reset(0)
        step_when_ready(model, 72)
        hung = harmony.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)
        model.step(74)
        model.finish_step()
        time.sleep(0.4)
        model.step(76)  # no chords 0.4 s after the step was sent: stuck
        model.finish_step()
        assert harmony.faults and "hung" in harmony.faults[0]
        assert poll(lambda: harmony.pid is not None and harmony.pid != hung)
        step_when_ready(model, 77)
    finally:
        harmony.close()
    assert not harmony_process_pids()


def test_a_model_that_cannot_load_says_which_file(tmp_path: Path) -> None:
    bad = tmp_path / "harmonizer.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as caught:
        HarmonyProcess(bad).start()
    assert str(bad) in str(caught.value) and "could not load" in str(caught.value)
    assert not harmony_process_pids()


def test_a_process_that_speaks_another_language_is_refused() -> None:
    with pytest.raises(CheckpointError, match="not ours"):
        HarmonyProcess(argv=[sys.executable, "-c", "print('hello'); import time; time.sleep(5)"]).start(5.0)


RUNTIME_SCRIPT = r"""
import json, os, signal, sys, threading, time
sys.path.insert(0, "tests/unit")
from harmony_fakes import harmony_process_pids
from companion.core.engine import EngineSettings
from companion.live.runtime import Runtime
from companion.midi.clock import InternalClock
from companion.midi.loopback import LoopbackPorts
from companion.worker.generators import MarkovGenerator

to_engine, from_engine = LoopbackPorts("in"), LoopbackPorts("out")
received, lock = [], threading.Lock()
def on_receive(data, time_ns):
    with lock:
        received.append(list(data))
receiver = from_engine.open_input(on_receive)
runtime = Runtime(EngineSettings(mode="harmonize", harmony_style="chorale", harmony_channels=(1, 2, 3)),
                  inputs=[to_engine.open_input], outputs=[from_engine.open_output()], generator=MarkovGenerator(),
                  clock=InternalClock(120.0))
player = to_engine.open_output()
runtime.start()
deadline = time.monotonic() + 60
while (runtime.harmony is None or not runtime.harmony.wait_ready(0.05)) and time.monotonic() < deadline:
    pass
killed, at_kill = None, 0
logs = []
runtime.add_log_listener(lambda level, text: logs.append(text))
for i, pitch in enumerate([72, 74, 76, 77, 79, 77, 76, 74, 72, 71, 72, 74]):
    if i == 6:
        killed = min(harmony_process_pids())
        os.kill(killed, signal.SIGKILL)
        with lock:
            at_kill = len(received)
    player.send([0x90, pitch, 100])
    time.sleep(0.24)
    player.send([0x80, pitch, 0])
    time.sleep(0.01)
time.sleep(0.3)
runtime.close()
time.sleep(0.1)
sounding = set()
ons = [0, 0]
for n, data in enumerate(received):
    key = (data[0] & 0x0F, data[1])
    if data[0] & 0xF0 == 0x90 and data[2] > 0:
        sounding.add(key)
        ons[n >= at_kill] += data[0] & 0x0F in (1, 2, 3)
    elif data[0] & 0xF0 in (0x80, 0x90):
        sounding.discard(key)
print(json.dumps({"torch": "torch" in sys.modules, "harmony_ons": ons, "sounding": sorted(sounding),
                  "killed": killed, "counts": runtime.harmony.counts, "logs": logs}))
"""


def test_the_real_time_process_plays_chorale_harmony_without_torch_through_a_killed_worker() -> None:
    """`companion run` in harmonize mode (chorale style): the runtime imports no torch, voices every melody note,
    keeps voicing after its harmony process is killed mid-phrase, and leaves no note sounding when it stops."""
    result = subprocess.run([sys.executable, "-c", RUNTIME_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["torch"] is False
    assert report["killed"] is not None
    assert report["counts"]["notes"] == 12 and report["counts"]["errors"] == 0, report["counts"]
    before, after = report["harmony_ons"]
    assert before >= 3 and after >= 3, report  # harmony before the kill and after it (chords change every beat)
    assert any("harmony worker process" in text and "voiced by rule" in text for text in report["logs"]), report
    assert report["sounding"] == []
