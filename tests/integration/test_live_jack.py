"""End to end over real JACK virtual ports: a phrase into `Companion In`, the answer out of `Companion Out`."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import pytest
from midi_wire import (
    ON_TIME_BOUND_MS,
    early_bound_ms,
    left_sounding,
    note_ons,
    play_at,
    repeated_cycles,
    repeated_cycles_in_log,
    start_headless,
    unexplained_double_strikes,
)

from companion.app import build_runtime
from companion.core.engine import EngineSettings
from companion.core.events import PPQ
from companion.live.runtime import RuntimeConfig

pytestmark = pytest.mark.jack


def _names() -> tuple[str, str]:
    """Port names of this test's own, so another companion on the same JACK server is never picked instead."""
    tag = uuid.uuid4().hex[:8]
    return f"Companion In {tag}", f"Companion Out {tag}"

# (pitch, onset, duration) in ticks from the phrase's first bar line: a one-bar D-major phrase.
PHRASE = [(62, 0, 200), (66, 240, 200), (69, 480, 400), (71, 960, 200), (69, 1200, 200), (66, 1440, 400)]


def test_phrase_in_answer_out_on_the_bar(jack_client, poll) -> None:
    settings = EngineSettings(seed=3, silence_beats=1.0, response_bars=1, response_start="bar")
    name_in, name_out = _names()
    runtime = build_runtime(RuntimeConfig(backend="jack", bpm=180.0, model="markov", in_name=name_in,
                                          out_name=name_out), settings).start()
    try:
        client = jack_client("daw").connect_out(name_in).connect_in(name_out)
        timebase = runtime.clock.timebase()
        first_bar = timebase.next_bar(timebase.ticks_at(time.monotonic_ns()) + PPQ)
        events = [(timebase.ns_at(first_bar + on), [0x90, p, 96]) for p, on, _ in PHRASE]
        events += [(timebase.ns_at(first_bar + on + d), [0x80, p, 0]) for p, on, d in PHRASE]
        play_at(client.send, events)
        phrase_end = first_bar + max(on + d for _, on, d in PHRASE)
        answer_bar = timebase.next_bar(phrase_end + PPQ)  # 1 beat of silence ends the phrase
        answer_end_ns = timebase.ns_at(answer_bar + timebase.bar_ticks)
        assert client.wait_for(lambda m: time.monotonic_ns() > answer_end_ns + 200_000_000, timeout_s=10)
        messages = client.messages()
        answer = note_ons(messages)
        assert answer, "no answer came back from Companion Out"
        first_ns = answer[0][1]
        error_ms = (first_ns - timebase.ns_at(answer_bar)) / 1e6
        # On the planned bar line: within half a JACK period either side (sent half a period ahead), a busy CI box
        # later.
        early_ns = early_bound_ms(timed=runtime.timed_output) * 1e6
        assert -early_ns / 1e6 <= error_ms <= ON_TIME_BOUND_MS, f"answer's first note {error_ms:.2f} ms from its bar"
        late_ns = ON_TIME_BOUND_MS * 1e6
        assert all(timebase.ns_at(answer_bar) - early_ns <= t <= answer_end_ns + late_ns for _, t in answer)
        ons, left = len(answer), left_sounding(messages)
        assert ons >= 2 and left == 0
        assert unexplained_double_strikes(messages, repeated_cycles()) == []
    finally:
        runtime.close()


def test_player_resuming_stops_the_answer_with_note_offs(jack_client) -> None:
    settings = EngineSettings(seed=1, silence_beats=0.5, response_bars=4, response_start="beat",
                              on_player_resume="stop")
    name_in, name_out = _names()
    runtime = build_runtime(RuntimeConfig(backend="jack", bpm=200.0, model="markov", in_name=name_in,
                                          out_name=name_out), settings).start()
    try:
        client = jack_client("daw").connect_out(name_in).connect_in(name_out)
        timebase = runtime.clock.timebase()
        start = timebase.next_beat(timebase.ticks_at(time.monotonic_ns()) + PPQ)
        play_at(client.send, [(timebase.ns_at(start + on), [0x90, p, 96]) for p, on, _ in PHRASE]
                 + [(timebase.ns_at(start + on + d), [0x80, p, 0]) for p, on, d in PHRASE])
        assert client.wait_for(lambda m: any(d[0] & 0xF0 == 0x90 and d[2] for d, _ in m), timeout_s=5)
        client.send([0x90, 74, 100])  # the player comes back in and holds a note: the answer must stop
        resumed_ns = time.monotonic_ns()
        client.wait_for(lambda m: time.monotonic_ns() > resumed_ns + 600_000_000, timeout_s=2)
        after = [t for d, t in client.messages() if d[0] & 0xF0 == 0x90 and d[2] and t > resumed_ns + 5_000_000]
        client.send([0x80, 74, 0])
        assert not after, "the answer kept playing after the player came back in"
        assert left_sounding(client.messages()) == 0
        assert unexplained_double_strikes(client.messages(), repeated_cycles()) == []
    finally:
        runtime.close()


def test_sigterm_during_an_answer_leaves_no_stuck_note(jack_client) -> None:
    names = _names()
    process = start_headless(names, "--bpm", "200")
    try:
        client = jack_client("daw")
        client.connect_out(names[0]).connect_in(names[1])
        beat_ns = int(60e9 / 200)
        t0 = time.monotonic_ns() + beat_ns
        held = [(t0 + i * beat_ns // 2, p) for i, p in enumerate([60, 64, 67, 72, 71, 67, 64, 62])]
        play_at(client.send, [(t, [0x90, p, 90]) for t, p in held]
                 + [(t + beat_ns // 2 - 2_000_000, [0x80, p, 0]) for t, p in held])
        assert client.wait_for(lambda m: any(d[0] & 0xF0 == 0x90 and d[2] for d, _ in m), timeout_s=10), \
            "no answer before SIGTERM"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        ons, left = len(note_ons(client.messages())), left_sounding(client.messages())
        assert ons >= 1 and left == 0, f"{left} notes left sounding after SIGTERM"
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate(timeout=5)[0]
        assert "Traceback" not in output, output
    assert unexplained_double_strikes(client.messages(), repeated_cycles_in_log(output)) == [], output


def test_answers_follow_the_daws_clock(jack_client) -> None:
    """With --clock external the answer lands on the beat grid of the MIDI clock the 'DAW' sends."""
    names = _names()
    process = start_headless(names, "--clock", "external")
    stop = threading.Event()
    try:
        client = jack_client("daw").connect_out(names[0]).connect_in(names[1])
        bpm = 150.0
        pulse_ns = int(60e9 / bpm / 24)
        origin_ns = time.monotonic_ns() + 200_000_000

        def send_clock() -> None:
            client.send([0xFA])
            pulse = 0
            while not stop.is_set():
                play_at(client.send, [(origin_ns + pulse * pulse_ns, [0xF8])])
                pulse += 1

        clock_thread = threading.Thread(target=send_clock, daemon=True)
        clock_thread.start()
        beat_ns = 24 * pulse_ns
        phrase_start = origin_ns + 8 * beat_ns  # bar 3: the follower has two bars to lock
        play_at(client.send, [(phrase_start + on * beat_ns // PPQ, [0x90, p, 90]) for p, on, _ in PHRASE]
                 + [(phrase_start + (on + d) * beat_ns // PPQ, [0x80, p, 0]) for p, on, d in PHRASE])
        assert client.wait_for(lambda m: any(d[0] & 0xF0 == 0x90 and d[2] for d, _ in m), timeout_s=10)
        first_ns = next(t for d, t in client.messages() if d[0] & 0xF0 == 0x90 and d[2])
        beats = (first_ns - origin_ns) / beat_ns
        off_ms = (beats - round(beats)) * beat_ns / 1e6
        assert abs(off_ms) <= ON_TIME_BOUND_MS, f"answer {off_ms:.2f} ms off the DAW's beat (a 16th is 100 ms)"
        assert round(beats) % 4 == 0, f"answer started on beat {beats:.2f}, not a bar line"
    finally:
        stop.set()
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=10)[0]
        assert process.returncode == 0, output
        assert left_sounding(client.messages()) == 0
    assert unexplained_double_strikes(client.messages(), repeated_cycles_in_log(output)) == [], output


def test_clock_master_sends_start_and_pulses_at_the_tempo(jack_client) -> None:
    settings = EngineSettings()
    name_in, name_out = _names()
    runtime = build_runtime(RuntimeConfig(backend="jack", bpm=125.0, send_clock=True, model="markov",
                                          in_name=name_in, out_name=name_out), settings)
    client = jack_client("daw").connect_in(name_out)
    runtime.start()
    try:
        assert client.wait_for(lambda m: sum(1 for d, _ in m if d == [0xF8]) >= 97, timeout_s=10)
        messages = client.messages()
        assert any(d in ([0xFA], [0xFB]) for d, _ in messages), "followers need Start or Continue"
        pulses = [t for d, t in messages if d == [0xF8]][:97]
        # Least squares over every pulse: one late arrival (a busy CI box) must not move the estimate much.
        n = len(pulses)
        mean_i, mean_t = (n - 1) / 2, sum(pulses) / n
        slope_ns = sum((i - mean_i) * (t - mean_t) for i, t in enumerate(pulses)) / sum(
            (i - mean_i) ** 2 for i in range(n))
        bpm = 60e9 / (slope_ns * 24)
        assert abs(bpm - 125.0) < 0.5, f"clock sent at {bpm:.2f} BPM"
    finally:
        runtime.close()
    assert client.wait_for(lambda m: [0xFC] in [d for d, _ in m], timeout_s=2), "Stop sent on close"


def test_choosing_named_ports_moves_the_session_and_closes_notes_on_the_old_ones(jack_client, poll) -> None:
    """The UI's port chooser: a keyboard's and a synth's named ports replace the virtual ones, live."""
    from companion.live.intents import ChoosePorts

    tag = uuid.uuid4().hex[:8]
    name_in, name_out = _names()
    settings = EngineSettings(thru=True, silence_beats=64.0, max_bars=None)
    runtime = build_runtime(RuntimeConfig(backend="jack", bpm=120.0, model="markov", in_name=name_in,
                                          out_name=name_out), settings).start()
    try:
        old = jack_client("old-daw").connect_out(name_in).connect_in(name_out)
        assert old.send_until([0x90, 60, 100], lambda: any(d[:2] == [0x90, 60] for d, _ in old.messages()))
        keys = jack_client("keys").open_virtual_out(f"Keys {tag}")
        synth = jack_client("synth").open_virtual_in(f"Synth {tag}")
        runtime.post_intent(ChoosePorts(in_port=f"Keys {tag}", out_port=f"Synth {tag}"))
        assert poll(lambda: runtime.snapshot().get("ports", {}).get("in") == f"Keys {tag}", 10.0)
        # The note held through the old ports ended there before they closed.
        assert left_sounding(old.messages()) == 0
        assert keys.send_until([0x90, 64, 90], lambda: any(d[:2] == [0x90, 64] for d, _ in synth.messages()))
        keys.send([0x80, 64, 0])
        runtime.post_intent(ChoosePorts(in_port="No Such Keyboard", out_port=None))
        assert poll(lambda: any("ports unchanged" in text for _, text in runtime.snapshot()["log"]), 10.0)
        assert runtime.snapshot()["ports"]["in"] == f"Keys {tag}"
    finally:
        runtime.close()
