"""Harmonize mode end to end over JACK: a melody into `Companion In`, harmony under each note out of `Companion Out`."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from midi_wire import ON_TIME_BOUND_MS, repeated_cycles, unexplained_double_strikes

from companion.app import build_runtime
from companion.core.engine import EngineSettings, PanicIntent, SetMode
from companion.core.events import PPQ
from companion.live.runtime import Runtime, RuntimeConfig
from models.chorale.harmonizer import SHIPPED_CHECKPOINT

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="the shipped harmonizer is not built yet")]

BPM = 120.0
HARMONY_CHANNELS = (1, 2, 3)
# (pitch, beat): detached quarter notes on the beat, a held note, and notes above the chorale range (folded)
MELODY = [(67, 0), (72, 1), (71, 2), (69, 3), (67, 4), (74, 5), (76, 6), (74, 7), (72, 8), (96, 9), (98, 10),
          (67, 11)]


def _names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"Companion In {tag}", f"Companion Out {tag}"


def _start(settings: EngineSettings) -> tuple[Runtime, str, str]:
    name_in, name_out = _names()
    runtime = build_runtime(RuntimeConfig(backend="jack", bpm=BPM, model="markov", in_name=name_in,
                                          out_name=name_out), settings).start()
    return runtime, name_in, name_out


def _wait_warm(runtime: Runtime, poll: Callable[..., object]) -> None:
    assert poll(lambda: runtime.harmony is not None, 10.0), "harmonize mode did not start the harmony worker"
    assert runtime.harmony is not None and runtime.harmony.wait_ready(60.0), runtime.harmony.failed


def _sounding(messages: list[tuple[list[int], int]]) -> set[tuple[int, int]]:
    sounding: set[tuple[int, int]] = set()
    for data, _ in messages:
        kind, key = data[0] & 0xF0, (data[0] & 0x0F, data[1] if len(data) > 1 else -1)
        if kind == 0x90 and data[2] > 0:
            sounding.add(key)
        elif kind in (0x80, 0x90):
            sounding.discard(key)
        elif kind == 0xB0 and data[1] in (120, 123):
            sounding = {k for k in sounding if k[0] != (data[0] & 0x0F)}
    return sounding


def _sleep_until(deadline_ns: int) -> None:
    while (left := deadline_ns - time.monotonic_ns()) > 1_000_000:
        time.sleep((left - 1_000_000) / 1e9)
    while time.monotonic_ns() < deadline_ns:
        pass


def _play_melody(runtime: Runtime, client, before: Callable[[int], None] = lambda i: None) -> list[tuple[int, int]]:
    """MELODY on the runtime's beats from the next bar but one: (send time, pitch) of each note; `before(i)` runs
    just before note i."""
    timebase = runtime.clock.timebase()
    first_beat = timebase.next_bar(timebase.ticks_at(time.monotonic_ns()) + 2 * PPQ)
    sent: list[tuple[int, int]] = []
    for i, (pitch, beat) in enumerate(MELODY):
        _sleep_until(timebase.ns_at(first_beat + beat * PPQ))
        before(i)
        sent.append((client.send([0x90, pitch, 96]), pitch))
        _sleep_until(timebase.ns_at(first_beat + beat * PPQ + PPQ * 3 // 4))
        client.send([0x80, pitch, 0])
    return sent


def _latencies_ms(messages: list[tuple[list[int], int]], sent: list[tuple[int, int]]) -> list[float]:
    """Per melody note, its send -> the last of the harmony notes that answered it (every note must have some)."""
    latencies_ms = []
    for i, (sent_ns, pitch) in enumerate(sent):
        until_ns = sent[i + 1][0] if i + 1 < len(sent) else sent_ns + 10**9
        until_ns = min(until_ns, sent_ns + 100_000_000)  # what answered this note, not a later voice move
        ons = [t for data, t in messages if sent_ns <= t < until_ns and data[0] & 0xF0 == 0x90 and data[2] > 0]
        assert ons, f"melody note {pitch} (beat {MELODY[i][1]}) got no harmony"
        latencies_ms.append((max(ons) - sent_ns) / 1e6)
    return latencies_ms


def test_each_melody_note_gets_its_harmony_at_once_and_all_notes_close(jack_client, poll) -> None:
    settings = EngineSettings(mode="harmonize", harmony_channels=HARMONY_CHANNELS, key_lock=False, seed=4)
    runtime, name_in, name_out = _start(settings)
    try:
        _wait_warm(runtime, poll)
        client = jack_client("daw").connect_out(name_in).connect_in(name_out)
        assert client.send_until([0x90, 60, 1], lambda: bool(client.messages()), 5.0), "no harmony at all"
        client.send([0x80, 60, 0])
        assert client.wait_for(lambda m: not _sounding(m), 2.0)
        sent = _play_melody(runtime, client)
        assert client.wait_for(lambda m: not _sounding(m), 2.0), f"left sounding: {_sounding(client.messages())}"
        messages = client.messages()
        latencies_ms = _latencies_ms(messages, sent)
        assert {data[0] & 0x0F for data, _ in messages} <= set(HARMONY_CHANNELS)
        ordered = sorted(latencies_ms)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]
        print(f"\nharmony over JACK: n={len(ordered)} p50={ordered[len(ordered) // 2]:.2f} ms p99={p99:.2f} ms "
              f"max={ordered[-1]:.2f} ms; worker in-process {runtime.harmony.latency_stats()}")  # type: ignore[union-attr]
        assert max(latencies_ms) <= ON_TIME_BOUND_MS, f"harmony latencies (ms): {latencies_ms}"
        assert any("octave" in text for _, text in runtime.snapshot()["log"]), "the folded melody was not logged"
        assert unexplained_double_strikes(messages, repeated_cycles()) == []
    finally:
        runtime.close()


def _harmony_process_pid() -> int:
    """The pid of our chorale harmony worker process (a child of this test process)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid() \
                    and b"companion.worker.harmony_main" in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    raise AssertionError("no harmony worker process")


def test_killing_the_harmony_process_mid_phrase_keeps_every_note_voiced_and_closed(jack_client, poll) -> None:
    """The chorale models run in their own process: killed under a sounding chord, the harmony goes on by rule at
    once (every later melody note still voiced, on time), a new process takes over, and nothing is left sounding."""
    settings = EngineSettings(mode="harmonize", harmony_channels=HARMONY_CHANNELS, key_lock=False, seed=4)
    runtime, name_in, name_out = _start(settings)
    killed: list[int] = []

    def kill(i: int) -> None:
        if i == 5:
            killed.append(_harmony_process_pid())
            os.kill(killed[0], signal.SIGKILL)

    try:
        _wait_warm(runtime, poll)
        client = jack_client("daw").connect_out(name_in).connect_in(name_out)
        sent = _play_melody(runtime, client, kill)
        assert client.wait_for(lambda m: not _sounding(m), 2.0), f"left sounding: {_sounding(client.messages())}"
        latencies_ms = _latencies_ms(client.messages(), sent)
        assert max(latencies_ms) <= ON_TIME_BOUND_MS, f"harmony latencies (ms): {latencies_ms}"
        logs = [text for _, text in runtime.snapshot()["log"]]
        assert any("voiced by rule" in text for text in logs), logs
        assert poll(lambda: _harmony_process_pid() != killed[0], 30.0), "no new harmony process"
    finally:
        runtime.close()
    assert not _sounding(client.messages())
    assert runtime.harmony is not None and runtime.harmony.counts["errors"] == 0


def test_panic_and_a_mode_change_leave_nothing_sounding_under_a_held_note(jack_client, poll) -> None:
    settings = EngineSettings(mode="harmonize", harmony_style="block", seed=1)
    runtime, name_in, name_out = _start(settings)
    try:
        _wait_warm(runtime, poll)
        client = jack_client("daw").connect_out(name_in).connect_in(name_out)
        assert client.send_until([0x90, 72, 100], lambda: len(_sounding(client.messages())) >= 2, 5.0)
        runtime.post_intent(PanicIntent())
        assert client.wait_for(lambda m: not _sounding(m), 2.0), "panic left harmony sounding"
        client.send([0x80, 72, 0])
        client.send([0x90, 74, 100])
        assert client.wait_for(lambda m: len(_sounding(m)) >= 2, 5.0), "no harmony after the panic"
        runtime.post_intent(SetMode("call_response"))
        assert client.wait_for(lambda m: not _sounding(m), 2.0), "the mode change left harmony sounding"
        client.send([0x80, 74, 0])
    finally:
        runtime.close()
    assert not _sounding(client.messages())


def test_lead_sheet_comping_answers_each_line_at_once_keeps_the_clock_and_swaps_models(jack_client, poll) -> None:
    from companion.core.engine import ChangeSettings

    settings = EngineSettings(mode="harmonize", harmony_style="comping", harmony_channels=(1, 1, 2),
                              change_every="beat", key="G major", seed=2)
    runtime, name_in, name_out = _start(settings)
    try:
        _wait_warm(runtime, poll)
        assert runtime.harmony.family == "chords"  # type: ignore[union-attr]
        client = jack_client("daw").connect_out(name_in).connect_in(name_out)
        timebase = runtime.clock.timebase()
        first_beat = timebase.next_bar(timebase.ticks_at(time.monotonic_ns()) + 2 * PPQ)
        sent: list[tuple[int, int]] = []
        for pitch, beat in MELODY[:9]:
            _sleep_until(timebase.ns_at(first_beat + beat * PPQ))
            sent.append((client.send([0x90, pitch, 96]), pitch))
            _sleep_until(timebase.ns_at(first_beat + beat * PPQ + PPQ * 3 // 4))
            client.send([0x80, pitch, 0])
        chord = runtime.snapshot()["harmony"]["chord"]
        assert chord and chord[0] in "ABCDEFG", f"no chord symbol in the snapshot: {runtime.snapshot()['harmony']}"
        # comping keeps striking through the rest after the tune, on the 16th grid, until the piece ends
        rest_from = client.messages()[-1][1] if client.messages() else time.monotonic_ns()
        assert client.wait_for(lambda m: any(t > rest_from + 200_000_000 and d[0] & 0xF0 == 0x90 for d, t in m), 3.0)
        assert client.wait_for(lambda m: not _sounding(m), 5.0), f"left sounding: {_sounding(client.messages())}"
        messages = client.messages()
        assert {data[0] & 0x0F for data, _ in messages} <= {1, 2} and any(d[0] & 0x0F == 2 for d, _ in messages)
        latencies_ms = []
        for (sent_ns, pitch), (_, beat) in zip(sent, MELODY, strict=False):
            if beat % 2:
                continue  # beats 2 and 4 are not comping strikes: a new chord there strikes, the same one rings
            ons = [t for data, t in messages if sent_ns <= t < sent_ns + 30_000_000 and data[0] & 0xF0 == 0x90]
            assert ons, f"melody note {pitch} on beat {beat} (a strike and a change line) got no chord at once"
            latencies_ms.append((min(ons) - sent_ns) / 1e6)
        assert max(latencies_ms) <= ON_TIME_BOUND_MS, f"harmony latencies (ms): {latencies_ms}"
        runtime.post_intent(ChangeSettings({"harmony_style": "chorale"}))  # the other model takes over
        client.send([0x90, 72, 100])
        assert poll(lambda: runtime.harmony is not None and runtime.harmony.family == "chorale", 10.0)
        client.send([0x80, 72, 0])
    finally:
        runtime.close()
    assert not _sounding(client.messages())
