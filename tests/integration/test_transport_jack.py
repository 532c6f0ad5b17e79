"""The DAW's transport over JACK, played by a C client at exact frames: Start's position, Stop, no double strike."""

from __future__ import annotations

import re
import signal
import time
import uuid
from pathlib import Path

import pytest
from daw import (
    BEAT_FRAMES_120,
    PULSE_FRAMES_120,
    RATE,
    Daw,
    Heard,
    double_strikes,
    note_on_frames,
    notes,
    started_clock,
)
from midi_wire import ON_TIME_BOUND_MS, left_sounding, server_period_frames, start_headless

from companion.app import build_runtime
from companion.core.engine import EngineSettings
from companion.live.runtime import Runtime, RuntimeConfig
from companion.midi import jack

pytestmark = pytest.mark.jack

BEAT = BEAT_FRAMES_120
SIXTEENTH = BEAT // 4
BOUND_FRAMES = round(ON_TIME_BOUND_MS * RATE / 1000)  # a CI box may stall; a clock pulse (1000 frames) is more
# Eighth notes over two beats: the phrase the DAW plays, (pitch, beat offset in eighths)
PHRASE = [(60, 0), (64, 1), (67, 2), (72, 3)]


def _runtime(settings: EngineSettings) -> tuple[Runtime, str, str]:
    tag = uuid.uuid4().hex[:8]
    name_in, name_out = f"Companion In {tag}", f"Companion Out {tag}"
    runtime = build_runtime(RuntimeConfig(backend="jack", clock="external", model="markov", in_name=name_in,
                                          out_name=name_out), settings).start()
    return runtime, f"companion:{name_in}", f"companion:{name_out}"


def _phrase_at(first_frame: int) -> list[tuple[int, list[int]]]:
    return notes([(pitch, first_frame + k * BEAT // 2, first_frame + (k + 1) * BEAT // 2 - 600) for pitch, k in PHRASE])


def _until(heard: Heard, frame: int) -> list[tuple[list[int], int]]:
    """What was heard up to `frame`, as midi_wire's (bytes, time) pairs."""
    return [(data, f) for f, data in heard if f <= frame]


def _stop_run(daw_binary: Path) -> tuple[Heard, int, bool]:
    """One run of the Stop scenario: what the DAW heard, the Stop's frame, and whether Companion's JACK client
    missed cycles (the machine stalled: what the DAW sent then, the Stop among it, was lost before us)."""
    settings = EngineSettings(seed=3, silence_beats=1.0, response_bars=2, response_start="beat")
    runtime, to_port, from_port = _runtime(settings)
    first = BEAT // 2 + 10  # the first pulse, 10 frames after Start
    stop = first + 7 * BEAT + 5_000  # mid-answer: the answer starts on beat 4 or 5 and lasts two bars
    end = first + 12 * BEAT
    script = started_clock(first - 10, first, stop) + _phrase_at(first + BEAT) + [(stop, [0xFC])]
    missed_before = jack.missed_cycles()[0]
    try:
        heard = Daw(daw_binary, f"daw-{uuid.uuid4().hex[:6]}", to_port, from_port, script, end).start().heard()
        stalled = jack.missed_cycles()[0] > missed_before
    finally:
        runtime.close()
    return heard, stop, stalled


def test_daws_stop_ends_the_answer_at_once(daw_binary: Path) -> None:
    for _ in range(3):  # a run that failed while our client missed cycles says nothing: it is played again
        heard, stop, stalled = _stop_run(daw_binary)
        ons = note_on_frames(heard)
        if not stalled or (not [f for f in ons if f > stop + BOUND_FRAMES]
                           and left_sounding(_until(heard, stop + BOUND_FRAMES)) == 0):
            break
    assert [f for f in ons if f < stop], "no answer before the DAW's Stop"
    late = [f - stop for f in ons if f > stop + BOUND_FRAMES]
    assert not late, f"the answer played on after Stop: note-ons {late} frames after FC"
    assert left_sounding(_until(heard, stop + BOUND_FRAMES)) == 0, "notes still sounding after Stop"
    assert double_strikes(heard) == []


def test_daws_stop_silences_the_harmony_under_a_held_note(jack_client, poll) -> None:  # noqa: ANN001
    """Stop reaches the engine with the internal clock too: harmony under a note still held goes at once."""
    from models.chorale.harmonizer import SHIPPED_CHECKPOINT

    if not SHIPPED_CHECKPOINT.is_file():
        pytest.skip("the shipped harmonizer is not built yet")
    tag = uuid.uuid4().hex[:8]
    name_in, name_out = f"Companion In {tag}", f"Companion Out {tag}"
    settings = EngineSettings(mode="harmonize", harmony_style="block", seed=1)
    runtime = build_runtime(RuntimeConfig(backend="jack", model="markov", in_name=name_in, out_name=name_out),
                            settings).start()
    try:
        assert poll(lambda: runtime.harmony is not None, 10.0), "harmonize mode did not start the harmony worker"
        assert runtime.harmony is not None and runtime.harmony.wait_ready(60.0), runtime.harmony.failed
        client = jack_client("daw").connect_out(name_in).connect_in(name_out)
        assert client.send_until([0x90, 72, 100], lambda: left_sounding(client.messages()) >= 2, 5.0)
        stop_ns = client.send([0xFC])
        assert client.wait_for(lambda m: left_sounding(m) == 0, 2.0), "Stop left the harmony sounding"
        ended_ms = (client.messages()[-1][1] - stop_ns) / 1e6
        assert ended_ms <= ON_TIME_BOUND_MS, f"the harmony ended {ended_ms:.1f} ms after Stop"
        client.send([0x80, 72, 0])
    finally:
        runtime.close()



# Where Start (FA) falls in a JACK period of P frames: up to P - 11 its first pulse (10 frames on) is in the same
# period, from P - 10 in the next. Each Start is a run; short and long pauses between them (the tempo fit is kept
# across a short one, started afresh after a long one). Ten runs (eight at least answered): a fault in 2 of 5 runs slips
# through them 0.6 % (1.7 %) of the time.
START_OFFSETS = [0, -10, -11, -1, 20, -6, 40, -4, 10, -2]  # frames into the period (negative: before its end)
SHORT_PAUSE, LONG_PAUSE = RATE // 4, 3 * RATE // 2


PHASE_TRIES = 3  # a session whose DAW wrote events late (JACK restarted its frame clock) is played again


def _phase_session(daw_binary: Path) -> tuple[Daw, list[str], int, list]:
    """Ten Starts; the runs whose answer is off the DAW's grid, how many were answered, what the DAW heard."""
    settings = EngineSettings(seed=5, silence_beats=1.0, response_bars=1, response_start="beat")
    runtime, to_port, from_port = _runtime(settings)
    script: list[tuple[int, list[int]]] = []
    runs: list[tuple[int, int, int]] = []  # (offset of Start in its period, first pulse, Stop)
    period = server_period_frames()
    cycle = period * (6400 // period)
    for k, offset in enumerate(offset % period for offset in START_OFFSETS):
        first = cycle + offset + 10
        stop = first + 9 * BEAT // 2  # the answer starts on beat 3: Stop ends it half-way through beat 5
        played = [(60, first + BEAT, first + 3 * BEAT // 2 - 600), (67, first + 3 * BEAT // 2, first + 2 * BEAT - 600)]
        script += started_clock(first - 10, first, stop) + notes(played) + [(stop, [0xFC])]
        runs.append((offset, first, stop))
        pause = SHORT_PAUSE if k % 2 == 0 else LONG_PAUSE
        cycle = (stop + pause) // period * period
    try:
        daw = Daw(daw_binary, f"daw-{uuid.uuid4().hex[:6]}", to_port, from_port, script, cycle)
        heard = daw.start().heard()
    finally:
        runtime.close()
    faults, answered = [], 0
    for offset, first, stop in runs:
        ons = [f for f in note_on_frames(heard) if first < f <= stop]
        if not ons:
            continue  # a stalled CI box can make a run's answer too late to play (counted below)
        answered += 1
        from_grid = sorted((f - first + SIXTEENTH // 2) % SIXTEENTH - SIXTEENTH // 2 for f in ons)
        median = from_grid[len(from_grid) // 2]
        if abs(median) > PULSE_FRAMES_120 // 2:
            faults.append(f"Start at frame {offset}: notes {from_grid} frames off the grid")
    return daw, faults, answered, heard


def test_answers_land_on_the_daws_beat_however_start_and_the_first_pulse_fall_into_periods(daw_binary: Path) -> None:
    """The DAW sends Start, then its first pulse 10 frames later, at 120 BPM: the answer's notes are on its 16th
    grid, not a pulse (1000 frames) off, in every run (issue 13, point 4).

    The DAW's grid is its JACK frame counter. When the dummy driver wakes late JACK restarts that counter with a
    jump of whole periods, and the DAW writes what fell in the jump late: its grid moves against the time its
    clock was sent at. At a 64-frame period on a 2-core VM that happened in every session (2-25 late events), and
    5 of 8 sessions had a run 900-1150 frames off; at 256 frames, 0 of 80 Starts in 8 sessions. So a session with
    late events and a fault is played again; a fault in a session the DAW played on time fails at once."""
    for _ in range(PHASE_TRIES):
        daw, faults, answered, heard = _phase_session(daw_binary)
        if not faults or daw.late == 0:
            break
    assert answered >= len(START_OFFSETS) - 2, f"only {answered} of {len(START_OFFSETS)} runs were answered"
    assert not faults, f"answers off the DAW's beat (the DAW wrote {daw.late} events late): " + "; ".join(faults)
    assert double_strikes(heard) == []


def test_a_stalled_companion_says_so_and_no_double_strike_goes_unreported(daw_binary: Path) -> None:
    """Nothing in Companion writes a message twice; the double strike of issue 13 was JACK's: on a feedback
    connection a DAW reads a late client's output buffer again. Stalling Companion's process (as a busy machine
    does) makes JACK run cycles without it: the log must say so, and every double strike the DAW heard must be
    one that the log's count of repeated cycles accounts for."""
    tag = uuid.uuid4().hex[:8]
    names = (f"Companion In {tag}", f"Companion Out {tag}")
    process = start_headless(names, "--bpm", "240")
    beat = RATE // 4  # 240 BPM
    played = [(pitch, k * beat // 2, (k + 1) * beat // 2 - 600) for k, pitch in enumerate([60, 64, 67, 72, 71, 67])]
    daw = Daw(daw_binary, f"daw-{tag}", f"companion:{names[0]}", f"companion:{names[1]}", notes(played), 8 * RATE)
    try:
        daw.start()
        time.sleep(1.0)  # the phrase is being played; the answer (two bars, two seconds) comes on the next bar
        period_s = server_period_frames() / RATE
        stop_until = time.monotonic() + 4.0
        k = 0
        while time.monotonic() < stop_until:  # stalls of 1.5-3.5 periods, a few periods apart, for four seconds
            process.send_signal(signal.SIGSTOP)
            time.sleep(period_s * (1.5 + k % 5 * 0.5))
            process.send_signal(signal.SIGCONT)
            time.sleep(max(0.013, 2 * period_s))
            k += 1
        heard = daw.heard()
        time.sleep(1.0)  # the supervisor reports within a quarter of a second
    finally:
        process.send_signal(signal.SIGCONT)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0]
    reports = [line for line in output.splitlines() if "JACK ran" in line and "without Companion" in line]
    assert reports, f"the stalls were not reported:\n{output}"
    repeated = sum(int(match) for match in re.findall(r"messages of (\d+) cycle", "\n".join(reports)))
    doubles = double_strikes(heard)
    print(f"\nstalled: {len(doubles)} double strikes heard; reported: {reports}")
    assert note_on_frames(heard), "no answer"
    assert not doubles or repeated > 0, f"double strikes {doubles} with no repeated cycle reported: {reports}"
