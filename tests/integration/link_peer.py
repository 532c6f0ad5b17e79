"""A Link peer for the tests, in a process of its own: JSON commands on stdin, one JSON answer per line on stdout.

It is what Ableton Live or a phone app is in a jam: it sets the tempo, starts and stops the session, and says
where the session's bar lines are (in `time.monotonic_ns()`, the clock the test and Companion stamp with). It uses
the Link binding directly and none of Companion's code, so it checks Companion rather than agreeing with it.
Run it only inside a network namespace with nothing but loopback (link_netns.py makes one); it refuses otherwise.
"""

from __future__ import annotations

import json
import math
import socket
import sys
import time


def only_loopback() -> bool:
    """True inside a network namespace whose only interface is `lo` (Link must never reach a real network here)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


class Peer:
    def __init__(self, bpm: float, quantum: float) -> None:
        import link

        self.quantum = quantum
        self.link = link.Link(bpm)
        self.clock = self.link.clock()
        self.link.startStopSyncEnabled = True
        self.link.enabled = True

    def _offset_ns(self) -> int:
        """Link's clock minus monotonic_ns, from the tightest of a few paired reads."""
        best: tuple[int, int] | None = None
        for _ in range(5):
            before = time.monotonic_ns()
            micros = self.clock.micros()
            after = time.monotonic_ns()
            if best is None or after - before < best[0]:
                best = (after - before, micros * 1000 - (before + after) // 2)
        assert best is not None
        return best[1]

    def handle(self, command: dict) -> dict:
        name = command["cmd"]
        state = self.link.captureAppSessionState()
        now_us = self.clock.micros()
        if name == "tempo":
            state.setTempo(float(command["bpm"]), now_us)
            self.link.commitAppSessionState(state)
            return {"ok": True}
        if name == "play":
            # As Live does: the session starts on beat 0 of a bar (quantized to the next bar line with peers).
            state.setIsPlayingAndRequestBeatAtTime(True, now_us, 0.0, self.quantum)
            self.link.commitAppSessionState(state)
            started = self.link.captureAppSessionState()
            # Like LinkHut, the peer plays from its beat 0: the next bar line when others are in the session.
            return {**self._state(), "beat0_ns": started.timeAtBeat(0.0, self.quantum) * 1000 - self._offset_ns()}
        if name == "stop":
            state.setIsPlaying(False, now_us)
            self.link.commitAppSessionState(state)
            return self._state()
        if name == "state":
            return self._state()
        if name == "bar_near":
            return {"bar_ns": self._bar_near(int(command["ns"]))}
        if name == "bars_after":
            return {"bars_ns": self._bars_after(int(command["ns"]), int(command["count"]))}
        raise ValueError(f"unknown command {name!r}")

    def _state(self) -> dict:
        state = self.link.captureAppSessionState()
        offset_ns = self._offset_ns()
        return {"bpm": state.tempo(), "peers": self.link.numPeers(), "playing": state.isPlaying(),
                "transport_ns": state.timeForIsPlaying() * 1000 - offset_ns}

    def _bar_near(self, ns: int) -> int:
        """The session's bar line nearest to `ns` (the session's phase at the current tempo)."""
        state = self.link.captureAppSessionState()
        offset_ns = self._offset_ns()
        beat = state.beatAtTime((ns + offset_ns) // 1000, self.quantum)
        bar_beat = round(beat / self.quantum) * self.quantum
        return state.timeAtBeat(bar_beat, self.quantum) * 1000 - offset_ns

    def _bars_after(self, ns: int, count: int) -> list[int]:
        state = self.link.captureAppSessionState()
        offset_ns = self._offset_ns()
        beat = state.beatAtTime((ns + offset_ns) // 1000, self.quantum)
        first = math.ceil(beat / self.quantum) * self.quantum
        return [state.timeAtBeat(first + k * self.quantum, self.quantum) * 1000 - offset_ns for k in range(count)]


def main() -> int:
    if not only_loopback():
        print(json.dumps({"error": "not in a loopback-only network namespace: Link is not started"}), flush=True)
        return 2
    bpm, quantum = float(sys.argv[1]), float(sys.argv[2])
    peer = Peer(bpm, quantum)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        print(json.dumps(peer.handle(json.loads(line))), flush=True)
    peer.link.enabled = False
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
