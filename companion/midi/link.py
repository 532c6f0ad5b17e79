"""Ableton Link as a clock source: tempo, bar phase and start/stop read from the Link session at every call."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import threading
import time
from typing import Any

from companion.core.events import PPQ, ClockStart, ClockStop
from companion.core.timebase import MAX_BPM, MIN_BPM, Timebase
from companion.errors import ClockError
from companion.midi.clock import NowNs

DISTRIBUTION = "LinkPython-extern"  # the binding: the whole Link API, plain calls from any thread, no event loop
INSTALL_HINT = 'pip install "companion[link]"'
MISSING_MESSAGE = (f"--clock link needs Ableton Link, an optional extra: {INSTALL_HINT} "
                   "(GPL-licensed; see the README)")
JUMP_TICKS = PPQ // 8  # a position change larger than a 32nd between two reads is a jump, not a tempo glide
PEERS_WAIT_S = 2.0  # `companion ports --link`: how long to listen for peers (Link finds them in well under a second)
BEAT_EPSILON = 1e-6  # a beat this close to a bar line is on it (Link's beats are floats)
PROPOSE_WINDOW_NS = 5_000_000_000  # an explicit tempo waits this long for peers; alone it is the session's already
OFFSET_SAMPLE_NS = 20_000  # a Link-clock/monotonic pair read further apart than this is not trusted


def link_status(join: bool = False) -> str:
    """One line for `companion ports`: is the binding installed (found without importing it: no network), and
    with `join` the session's peers, counted by joining it for up to PEERS_WAIT_S (`companion ports --link`)."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return f"not installed ({INSTALL_HINT}; GPL-licensed)"
    if importlib.util.find_spec("_link") is None:
        return f"{DISTRIBUTION} {version} is installed but its module does not load; reinstall: {INSTALL_HINT}"
    if not join:
        return f"available ({DISTRIBUTION} {version}); --clock link joins the session on the local network " \
               "(companion ports --link counts its peers)"
    peers, bpm = session_peers()
    session = f"a session of {peers} peer{'' if peers == 1 else 's'} at {bpm:.1f} BPM" if peers else "no session found"
    return f"available ({DISTRIBUTION} {version}); {session} on the local network"


def session_peers(wait_s: float = PEERS_WAIT_S) -> tuple[int, float]:
    """Join the Link session for a moment: (peers, tempo). Waits `wait_s` at most, less once peers answer."""
    link = load_link().Link(120.0)
    link.enabled = True
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and link.numPeers() == 0:
            time.sleep(0.05)
        time.sleep(0.1 if link.numPeers() else 0.0)  # the session's tempo arrives just after the peer
        return int(link.numPeers()), float(link.captureAppSessionState().tempo())
    finally:
        link.enabled = False


def load_link() -> Any:
    """The binding's module, or a ClockError with the one line that says how to install it."""
    try:
        import link
    except ImportError:
        raise ClockError(MISSING_MESSAGE) from None
    if not hasattr(link, "Link"):  # another package named `link`
        raise ClockError(MISSING_MESSAGE)
    return link


class LinkClock:
    """Follows and leads an Ableton Link session.

    Link beats are quarter notes (Link's tempo is Timebase's bpm) and the quantum is one bar of the meter, so
    tick 0 of every bar is the session's bar line. Every `timebase()` reads the session anew and anchors the
    tempo map on the exact time of the current tick: readers (the scheduler before every wait, the engine)
    never extrapolate further than since their last read, and nothing accumulates. Bar 1 is where Companion
    joined, or where the session last started playing. A jump of the position (joining a session, a start)
    bumps `epoch`, so plans made on the old grid are dropped. Any thread may call every method.
    """

    def __init__(self, bpm: float = 120.0, beats_per_bar: int = 4, beat_unit: int = 4, *,
                 start_stop: bool = True, propose_tempo: bool = False, now_ns: NowNs = time.monotonic_ns,
                 module: Any = None) -> None:
        module = module if module is not None else load_link()
        self._now_ns = now_ns
        self._lock = threading.Lock()
        self._link = module.Link(float(bpm))
        self._link_clock = self._link.clock()
        self._link.startStopSyncEnabled = start_stop
        self.start_stop = start_stop
        self._beats_per_bar, self._beat_unit = beats_per_bar, beat_unit
        self._offset_ns = self._sample_offset(force=True)
        self._playing = False
        self._transport_seen = False  # a peer has started the session: it shares start/stop, so we follow it
        self._transport: list[ClockStart | ClockStop] = []  # start/stop seen, for the engine thread
        self.epoch = 0
        self.joined_ns = now_ns()  # when Companion joined the network's session (for the tests and the log)
        # An explicit tempo (--bpm, the preset's): joining takes the session's tempo (Link's rule), so it is
        # proposed once a peer is in the session with us (see _propose_pending)
        self._proposal: float | None = min(max(float(bpm), MIN_BPM), MAX_BPM) if propose_tempo else None
        self.proposed_ns: int | None = None
        self._link.enabled = True
        state = self._link.captureAppSessionState()
        self._base_beat = self._bar_floor(state.beatAtTime(self._link_clock.micros(), self.quantum))
        self._timebase = self._read(check_jump=False)

    # --- what readers get ------------------------------------------------------------------------------

    @property
    def quantum(self) -> float:
        """One bar of the meter in Link beats (quarter notes): 4 in 4/4, 3 in 6/8."""
        return self._beats_per_bar * 4 / self._beat_unit

    def timebase(self) -> Timebase:
        """The tempo map now, read from the session (bumps `epoch` when the position jumped)."""
        with self._lock:
            self._timebase = self._read()
            return self._timebase

    @property
    def bpm(self) -> float:
        return self._timebase.bpm

    @property
    def running(self) -> bool:
        """The session's transport once a peer has started it (start/stop sync on); until then, or with sync off,
        always running: a session whose peers share no start/stop must not silence --send-clock."""
        return self._playing or not (self.start_stop and self._transport_seen)

    @property
    def peers(self) -> int:
        """Other Link peers in the session."""
        return int(self._link.numPeers())

    def next_transport_ns(self) -> int | None:
        """When a start or stop the session has scheduled takes effect (a start waits for its bar line), on the
        monotonic clock; None when none is coming. A timed MIDI clock hands pulses over only up to it."""
        if not self.start_stop:
            return None
        with self._lock:
            state = self._link.captureAppSessionState()
            playing, at_us, _ = self._scheduled(state, self.quantum)
            return None if playing == self._playing else round(at_us * 1000) - self._offset_ns

    def take_transport(self) -> list[ClockStart | ClockStop]:
        """Start/stop changes of the session since the last call (the engine stops answering on a stop). The engine
        thread calls this every tick: a tempo asked for at start is proposed here, never on the scheduler's reads."""
        if self._proposal is not None:
            with self._lock:
                self._propose_pending()
        self.timebase()
        with self._lock:
            changes, self._transport = self._transport, []
        return changes

    def status(self) -> dict[str, Any]:
        """For the UI and the log: peers, whether the session plays, whether start/stop is followed."""
        return {"peers": self.peers, "playing": self._playing, "start_stop": self.start_stop,
                "quantum": self.quantum}

    # --- what Companion changes ------------------------------------------------------------------------

    def set_tempo(self, bpm: float) -> None:
        """Propose a tempo to the session from now on (every peer follows; Link has no vote)."""
        bpm = min(max(float(bpm), MIN_BPM), MAX_BPM)
        with self._lock:
            state = self._link.captureAppSessionState()
            state.setTempo(bpm, self._link_clock.micros())
            self._link.commitAppSessionState(state)
            self._timebase = self._read()

    def set_meter(self, beats_per_bar: int, beat_unit: int = 4) -> None:
        """A new quantum: bars restart from the current bar of the new meter (a jump when it changed)."""
        if (beats_per_bar, beat_unit) == (self._beats_per_bar, self._beat_unit):
            return
        with self._lock:
            self._beats_per_bar, self._beat_unit = beats_per_bar, beat_unit
            state = self._link.captureAppSessionState()
            self._base_beat = self._bar_floor(state.beatAtTime(self._link_clock.micros(), self.quantum))
            self.epoch += 1
            self._timebase = self._read(check_jump=False)

    def close(self) -> None:
        """Leave the session (idempotent)."""
        self._link.enabled = False

    # --- reading the session (under the lock) ------------------------------------------------------------

    def _bar_floor(self, beat: float) -> float:
        quantum = self.quantum
        return math.floor(beat / quantum + BEAT_EPSILON) * quantum

    def _bar_ceil(self, beat: float) -> float:
        quantum = self.quantum
        return math.ceil(beat / quantum - BEAT_EPSILON) * quantum

    def _sample_offset(self, force: bool = False) -> int:
        """Link's clock minus monotonic_ns (Link counts CLOCK_MONOTONIC_RAW on Linux): the tightest recent pair."""
        before = self._now_ns()
        micros = self._link_clock.micros()
        after = self._now_ns()
        if force or after - before <= OFFSET_SAMPLE_NS:
            return micros * 1000 - (before + after) // 2
        return self._offset_ns

    def _propose_pending(self) -> None:
        """The tempo asked for at start goes to the session once a peer shares it; after PROPOSE_WINDOW_NS alone,
        Companion's session runs at that tempo already and nothing is left to propose."""
        if self._link.numPeers() > 0:
            state = self._link.captureAppSessionState()
            state.setTempo(self._proposal, self._link_clock.micros())
            self._link.commitAppSessionState(state)
            self._proposal, self.proposed_ns = None, self._now_ns()
        elif self._now_ns() - self.joined_ns > PROPOSE_WINDOW_NS:
            self._proposal = None

    def _read(self, check_jump: bool = True) -> Timebase:
        self._offset_ns = self._sample_offset()
        state = self._link.captureAppSessionState()
        quantum = self.quantum
        now_ns = self._now_ns()
        now_us = (now_ns + self._offset_ns) // 1000
        if self._follow_transport(state, now_us, quantum):
            check_jump = False  # a start: the epoch moved already
        # The current tick, and the exact time it started on the session's timeline: the anchor.
        ticks = math.floor((state.beatAtTime(now_us, quantum) - self._base_beat) * PPQ)
        origin_us = state.timeAtBeat(self._base_beat + ticks / PPQ, quantum)
        origin_ns = round(origin_us * 1000) - self._offset_ns
        bpm = min(max(state.tempo(), MIN_BPM), MAX_BPM)
        timebase = Timebase(bpm, origin_ns, ticks, self._beats_per_bar, self._beat_unit)
        if check_jump and abs(timebase.ticks_at(now_ns) - self._timebase.ticks_at(now_ns)) > JUMP_TICKS:
            self.epoch += 1  # joined a session (phase moved) or a peer re-mapped the beat: plans are void
        return timebase

    def _scheduled(self, state: Any, quantum: float) -> tuple[bool, float, float]:
        """The session's transport as scheduled: playing, from when (Link's micros: a start at its first bar line at
        or after the start time), and that bar line's beat (0 for a stop)."""
        playing = bool(state.isPlaying())
        at_us = state.timeForIsPlaying()
        start_beat = self._bar_ceil(state.beatAtTime(at_us, quantum)) if playing else 0.0
        if playing:
            at_us = max(at_us, state.timeAtBeat(start_beat, quantum))
        return playing, at_us, start_beat

    def _follow_transport(self, state: Any, now_us: int, quantum: float) -> bool:
        """Start: bar 1 is the first bar line at or after the session's start time, from that moment on (True:
        the position jumped), as peers that start on the next bar with others playing do. Stop: from its time
        on, noted for the engine."""
        if not self.start_stop:
            return False
        playing, at_us, start_beat = self._scheduled(state, quantum)
        if playing == self._playing:
            return False
        if at_us > now_us:
            return False  # it happens later (a start waits for its bar line)
        self._playing = playing
        if not playing:
            self._transport.append(ClockStop())
            return False
        self._base_beat = start_beat
        self._transport_seen = True
        self.epoch += 1
        self._transport.append(ClockStart())
        return True
