"""LinkClock's arithmetic on a FakeLink session driven by a fake time (no network); the real two-peer session is
tests/integration/test_link_jack.py, in a network namespace of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from companion.core.events import PPQ, ClockStart, ClockStop
from companion.midi import link as link_module
from companion.midi.clock import ClockSender
from companion.midi.link import LinkClock, link_status

LINK_OFFSET_US = 123_456_789  # Link's clock is not monotonic_ns (CLOCK_MONOTONIC_RAW on Linux)


class FakeNow:
    def __init__(self, ns: int = 10_000_000_000) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


class FakeState:
    """A captured session state: one tempo segment (beat `beat0` at `us0`), and the transport."""

    def __init__(self, bpm: float, us0: int, beat0: float, playing: bool = False, playing_us: int = 0) -> None:
        self.bpm, self.us0, self.beat0, self.playing, self.playing_us = bpm, us0, beat0, playing, playing_us

    def copy(self) -> FakeState:
        return FakeState(self.bpm, self.us0, self.beat0, self.playing, self.playing_us)

    def tempo(self) -> float:
        return self.bpm

    def beatAtTime(self, us: int, quantum: float) -> float:  # noqa: N802 - the binding's names
        return self.beat0 + (us - self.us0) * self.bpm / 60e6

    def timeAtBeat(self, beat: float, quantum: float) -> int:  # noqa: N802
        return self.us0 + round((beat - self.beat0) * 60e6 / self.bpm)

    def setTempo(self, bpm: float, us: int) -> None:  # noqa: N802
        self.beat0, self.us0, self.bpm = self.beatAtTime(us, 4.0), us, bpm

    def isPlaying(self) -> bool:  # noqa: N802
        return self.playing

    def timeForIsPlaying(self) -> int:  # noqa: N802
        return self.playing_us

    def setIsPlaying(self, playing: bool, us: int) -> None:  # noqa: N802
        self.playing, self.playing_us = playing, us


class FakeLinkModule:
    """What `import link` gives, over one shared session that a test (the other peer) changes by hand."""

    def __init__(self, now: FakeNow) -> None:
        self.now = now
        self.session = FakeState(120.0, self.micros(), 0.0)
        self.peers = 0
        module = self

        class Clock:
            def micros(self) -> int:
                return module.micros()

        class Link:
            def __init__(self, bpm: float) -> None:  # joins the test's session at once: its tempo wins
                self.enabled = False
                self.startStopSyncEnabled = False

            def clock(self) -> Clock:
                return Clock()

            def numPeers(self) -> int:  # noqa: N802
                return module.peers

            def captureAppSessionState(self) -> FakeState:  # noqa: N802
                return module.session.copy()

            def commitAppSessionState(self, state: FakeState) -> None:  # noqa: N802
                module.session = state.copy()

        self.Link = Link

    def micros(self) -> int:
        return self.now.ns // 1000 + LINK_OFFSET_US

    def us(self, ns: int) -> int:
        return ns // 1000 + LINK_OFFSET_US


@pytest.fixture
def now() -> FakeNow:
    return FakeNow()


@pytest.fixture
def fake(now: FakeNow) -> FakeLinkModule:
    return FakeLinkModule(now)


def test_ticks_follow_the_sessions_beats_and_bar_lines(now: FakeNow, fake: FakeLinkModule) -> None:
    fake.session = FakeState(100.0, fake.micros(), 5.5)  # joined mid-bar: beat 5.5 of the session
    clock = LinkClock(120.0, 4, 4, now_ns=now, module=fake)
    timebase = clock.timebase()
    assert timebase.bpm == 100.0
    assert timebase.ticks_at(now.ns) == round(1.5 * PPQ)  # bar 1 starts on the session's bar line at beat 4
    bar_ns = timebase.ns_at(timebase.bar_ticks)  # the next bar line: the session's beat 8
    assert abs(fake.us(bar_ns) - fake.session.timeAtBeat(8.0, 4.0)) <= 1


def test_a_peers_tempo_change_is_read_at_the_next_call_without_drift(now: FakeNow, fake: FakeLinkModule) -> None:
    clock = LinkClock(120.0, 4, 4, now_ns=now, module=fake)
    now.ns += 700_000_000
    fake.session.setTempo(90.0, fake.micros())  # another peer
    for _ in range(200):  # many reads over 20 s of session time: no error piles up
        now.ns += 100_000_000
        timebase = clock.timebase()
    beat = fake.session.beatAtTime(fake.micros(), 4.0)
    assert timebase.bpm == 90.0
    assert abs(timebase.ticks_at(now.ns) - beat * PPQ) <= 1
    assert clock.epoch == 0  # a tempo change is not a jump


def test_a_jump_of_the_timeline_voids_plans(now: FakeNow, fake: FakeLinkModule) -> None:
    clock = LinkClock(120.0, 4, 4, now_ns=now, module=fake)
    now.ns += 10_000_000
    fake.session.beat0 += 0.5  # joining a session moved the phase by half a beat
    clock.timebase()
    assert clock.epoch == 1


def test_tempo_set_in_companion_goes_to_the_session(now: FakeNow, fake: FakeLinkModule) -> None:
    clock = LinkClock(120.0, 4, 4, now_ns=now, module=fake)
    ticks_before = clock.timebase().ticks_at(now.ns)
    clock.set_tempo(87.0)
    assert fake.session.bpm == 87.0 and clock.bpm == 87.0
    assert clock.timebase().ticks_at(now.ns) == ticks_before


def test_a_tempo_asked_for_at_start_is_proposed_once_a_peer_shares_the_session(now: FakeNow,
                                                                               fake: FakeLinkModule) -> None:
    """`--bpm 96 --clock link` joining a session at 120: Link's join takes the session's tempo, then 96 goes to
    every peer (once); without an explicit tempo the session's stays."""
    fake.session = FakeState(120.0, fake.micros(), 0.0)
    clock = LinkClock(96.0, 4, 4, propose_tempo=True, now_ns=now, module=fake)
    clock.take_transport()
    assert clock.timebase().bpm == 120.0 and clock.proposed_ns is None  # no peer found yet: nothing to propose to
    now.ns += 300_000_000
    fake.peers = 1
    clock.take_transport()  # the engine thread's tick proposes it
    assert clock.timebase().bpm == 96.0 and fake.session.bpm == 96.0 and clock.proposed_ns == now.ns
    fake.session.setTempo(110.0, fake.micros())  # a peer changes it afterwards: followed, not fought
    now.ns += 100_000_000
    assert clock.timebase().bpm == 110.0
    plain = LinkClock(96.0, 4, 4, now_ns=now, module=fake)
    now.ns += 100_000_000
    assert plain.timebase().bpm == 110.0 and plain.proposed_ns is None and fake.session.bpm == 110.0


def test_a_proposal_alone_lapses(now: FakeNow, fake: FakeLinkModule) -> None:
    clock = LinkClock(96.0, 4, 4, propose_tempo=True, now_ns=now, module=fake)
    now.ns += link_module.PROPOSE_WINDOW_NS + 1
    clock.take_transport()
    fake.peers = 1  # a peer much later: its session's tempo stands
    now.ns += 100_000_000
    clock.take_transport()
    assert clock.timebase().bpm == 120.0 and clock.proposed_ns is None


def test_start_puts_bar_one_on_the_next_bar_line_and_stop_is_reported(now: FakeNow, fake: FakeLinkModule) -> None:
    clock = LinkClock(120.0, 3, 4, now_ns=now, module=fake)  # 3/4: a quantum of 3 beats
    assert clock.running  # no peer has started the session yet: nothing says it shares start/stop
    now.ns += 1_200_000_000  # beat 2.4
    fake.session.setIsPlaying(True, fake.micros())  # a peer pressed play: it plays from the next bar line
    assert clock.take_transport() == [] and clock.epoch == 0
    bar_ns = now.ns + 300_000_000  # beat 3.0
    now.ns = bar_ns + 1_000_000
    assert clock.take_transport() == [ClockStart()] and clock.running
    assert clock.epoch == 1
    assert abs(clock.timebase().ns_at(0) - bar_ns) <= 1_000
    now.ns += 500_000_000
    fake.session.setIsPlaying(False, fake.micros())
    assert clock.take_transport() == [ClockStop()] and not clock.running


def test_without_start_stop_sync_it_always_runs(now: FakeNow, fake: FakeLinkModule) -> None:
    clock = LinkClock(120.0, 4, 4, start_stop=False, now_ns=now, module=fake)
    fake.session.setIsPlaying(True, fake.micros())
    assert clock.running and clock.take_transport() == []


def test_clock_sender_beside_link_stops_and_starts_with_the_session(now: FakeNow, fake: FakeLinkModule) -> None:
    clock = LinkClock(120.0, 4, 4, now_ns=now, module=fake)
    sender = ClockSender(lambda data: None, clock, now_ns=now)
    assert sender.transport(now.ns) != []  # no start/stop seen yet: the clock runs (a synth follows the tempo)
    fake.session.setIsPlaying(True, fake.micros() - 1)
    now.ns += 2_000_000  # the start is read within a pulse: FA, then the first pulse at once
    clock.timebase()
    assert sender.transport(now.ns) == [[0xFA]]
    assert sender.due(now.ns) == [[0xF8]]
    fake.session.setIsPlaying(False, fake.micros())
    now.ns += 1_000
    clock.timebase()
    assert sender.transport(now.ns) == [[0xFC]]
    assert sender.next_deadline_ns() is None


def test_missing_binding_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['link'] = None; from companion.cli import main; "
            "sys.exit(main(['run', '--headless', '--clock', 'link']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "COMPANION_CONFIG_DIR": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("companion:")]
    assert len(lines) == 1 and 'pip install "companion[link]"' in lines[0] and "GPL" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_ports_line_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise link_module.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(link_module.importlib.metadata, "version", missing)
    assert 'pip install "companion[link]"' in link_status()
