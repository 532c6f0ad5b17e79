"""What the JACK tests share: playing events at absolute deadlines, reading a received stream, a headless Companion."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

Received = Sequence[tuple[list[int], int]]

# How late a note may come out of JACK and still count as on its beat in these tests: less than half a 16th at
# the tests' tempos (83-125 ms), so a note on the wrong grid slot still fails, with room for a CI VM that stalls
# (stalls of 26-60 ms were seen). The real targets (1-3 ms) are measured by `companion bench`, not asserted here.
ON_TIME_BOUND_MS = 50.0


def early_bound_ms(timed: bool = False) -> float:
    """How early a note may be heard by a client that stamps it when its period begins (rtmidi's JACK): untimed
    output leaves at a period's start and the runtime sends half a period ahead, so within half a period of its
    time; timed output sits at its frame, anywhere in the period the listener stamps at its start: up to a whole
    period. 1 ms more for the reader."""
    period_ms = server_period_frames() / 48.0
    return (period_ms if timed else period_ms / 2) + 1.0


def server_period_frames(rate: int = 48_000) -> int:
    """The running JACK server's period in frames (conftest starts one of PERIOD_FRAMES; a developer's may differ)."""
    from companion.midi.backends import jack_period_ns

    return round(jack_period_ns() * rate / 1e9)


def wait_for_models(runtime: object, timeout_s: float = 60.0) -> None:
    """The ports open before the models load (issue 14): wait for the model worker, and in harmonize mode for
    the harmony model, as a player would wait for the log's 'ready' before playing."""
    deadline = time.monotonic() + timeout_s
    wait_ready = getattr(runtime.generator, "wait_ready", None)  # type: ignore[attr-defined]
    if wait_ready is not None:
        assert wait_ready(timeout_s), "the model worker did not become ready"
    if runtime.engine.settings.mode == "harmonize":  # type: ignore[attr-defined]
        while runtime.harmony is None and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)
        harmony = runtime.harmony  # type: ignore[attr-defined]
        assert harmony is not None and harmony.wait_ready(max(0.0, deadline - time.monotonic())), \
            "the harmony model did not become ready"


def play_phrase(runtime: object, send: Callable[[list[int]], object],
                phrase: Sequence[tuple[int, int, int]]) -> tuple[int, int]:
    """Play (pitch, onset, duration) ticks from the bar after the next beat; the answer's bar line (a beat of silence
    ends the phrase) and its end, in ticks."""
    from companion.core.events import PPQ

    timebase = runtime.clock.timebase()  # type: ignore[attr-defined]
    first_bar = timebase.next_bar(timebase.ticks_at(time.monotonic_ns()) + PPQ)
    play_at(send, [(timebase.ns_at(first_bar + on), [0x90, p, 96]) for p, on, _ in phrase]
            + [(timebase.ns_at(first_bar + on + d), [0x80, p, 0]) for p, on, d in phrase])
    answer_bar = timebase.next_bar(first_bar + max(on + d for _, on, d in phrase) + PPQ)
    return answer_bar, answer_bar + runtime.engine.settings.response_bars * timebase.bar_ticks  # type: ignore[attr-defined]


def heard_answer(runtime: object, client: object, answer_bar: int, answer_end: int, early_ms: float) -> list:
    """Wait until the answer is over, then check what a listening client heard: four notes at least, the first on
    its bar line (no earlier than `early_ms`, no later than ON_TIME_BOUND_MS). The messages, for further checks."""
    timebase = runtime.clock.timebase()  # type: ignore[attr-defined]
    end_ns = timebase.ns_at(answer_end)
    client.wait_for(lambda m: time.monotonic_ns() > end_ns + 300_000_000, timeout_s=20)  # type: ignore[attr-defined]
    messages = client.messages()  # type: ignore[attr-defined]
    ons = note_ons(messages)
    assert len(ons) >= 4, f"{len(ons)} answer notes"
    error_ms = (ons[0][1] - timebase.ns_at(answer_bar)) / 1e6
    assert -early_ms <= error_ms <= ON_TIME_BOUND_MS, f"first note {error_ms:.2f} ms from its bar line"
    return messages


def play_at(send: Callable[[list[int]], object], events: Sequence[tuple[int, list[int]]]) -> None:
    """Send each (deadline_ns, bytes) at its absolute deadline: sleep most of the way, spin the last millisecond."""
    for deadline_ns, data in sorted(events, key=lambda e: e[0]):
        while (left := deadline_ns - time.monotonic_ns()) > 1_000_000:
            time.sleep((left - 1_000_000) / 1e9)
        while time.monotonic_ns() < deadline_ns:
            pass
        send(data)


def note_ons(messages: Received) -> list[tuple[list[int], int]]:
    return [(d, t) for d, t in messages if d[0] & 0xF0 == 0x90 and d[2] > 0]


def left_sounding(messages: Received) -> int:
    """Notes still sounding at the end of a received stream (CC120/CC123 clears its channel)."""
    sounding: dict[tuple[int, int], int] = {}
    for data, _ in messages:
        kind, channel = data[0] & 0xF0, data[0] & 0x0F
        key = (channel, data[1] if len(data) > 1 else -1)
        if kind == 0x90 and data[2] > 0:
            sounding[key] = sounding.get(key, 0) + 1
        elif kind in (0x80, 0x90) and sounding.get(key):
            sounding[key] -= 1
        elif kind == 0xB0 and data[1] in (120, 123):
            sounding = {k: v for k, v in sounding.items() if k[0] != channel}
    return sum(sounding.values())


def repeated_cycles() -> int:
    """Cycles JACK ran without this process's Companion clients right after one that sent output (read it before
    the runtime closes: a closed client's count goes with it)."""
    from companion.midi.jack import missed_cycles

    return missed_cycles()[1]


def repeated_cycles_in_log(output: str) -> int:
    """The same, as a headless session's log reports it (its supervisor says so within a quarter second)."""
    return sum(int(n) for n in re.findall(r"Companion's messages of (\d+) cycle", output))


def unexplained_double_strikes(messages: Received, repeated: int) -> list[tuple[int, list[int]]]:
    """Messages heard twice (daw.double_strikes: a note-on of a sounding key, a note-off of a silent one, which
    Companion's scheduler never sends) that no repeated JACK cycle explains. Nothing in Companion writes a message
    twice; JACK makes a reader read a client's buffer again in a cycle the client missed (issue 13, point 5), and
    the shim counts those cycles: a double strike with none counted is a bug of ours."""
    from daw import double_strikes

    doubles = double_strikes([(time_ns, data) for data, time_ns in messages])
    if doubles and repeated:
        print(f"{len(doubles)} double strike(s) heard, {repeated} repeated JACK cycle(s) counted: JACK's, not ours")
    return [] if repeated else doubles


def start_headless(names: tuple[str, str], *extra: str) -> subprocess.Popen[str]:
    """`companion run --headless` in its own process (output piped, text); returns once both of its ports are up."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "companion", "run", "--headless", "--backend", "jack", "--seed", "2",
         "--in-name", names[0], "--out-name", names[1], *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 60  # a cold start imports torch: slow on a busy CI box
    while process.poll() is None and time.monotonic() < deadline:
        listed = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10).stdout
        if all(name in listed for name in names):
            break
        time.sleep(0.1)
    assert process.poll() is None, process.communicate(timeout=5)[0]
    return process
