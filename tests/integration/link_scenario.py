"""Two Link peers on one machine: Companion (the real runtime, on JACK ports) and the test's peer (link_peer.py).

Run only inside a loopback-only network namespace (test_link_jack.py starts it through link_netns.py). It plays
the jam the issue describes and prints one JSON object of what it measured; the test asserts on it:
  1. Companion joins a session the peer runs at PEER_BPM: how long until Companion's tempo is the session's.
  2. Phrases played into `Companion In` on the peer's bar lines: each answer's first note, as it arrives from
     `Companion Out` over JACK (stamped at its frame; Companion runs with --timed-output), against the peer's bar
     line nearest to it, and Companion's planned bar line against the peer's.
  3. The peer changes the tempo: how long until Companion follows; one more answer at the new tempo.
  4. A preset switch in Companion sets a tempo: how long until the peer's session has it.
  5. The peer starts the session (start/stop sync): Companion's bar 1 against the peer's start time, the MIDI
     clock Companion sends beside Link (--send-clock: FA, then F8); then the peer stops it during an answer:
     Companion's note-ons after the stop, the notes left sounding, and FC.
  6. The UI's clock chooser (SetClock): to the internal clock (Companion leaves the session), back to Link.
  7. `companion ports --link` in a third process: the session's peers (Companion and the peer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conftest import poll_until as poll  # noqa: E402
from link_peer import only_loopback  # noqa: E402
from midi_wire import left_sounding, note_ons, play_at  # noqa: E402

PEER_BPM, NEW_PEER_BPM, PRESET_BPM, REJOIN_BPM = 140.0, 126.0, 111.0, 133.0
QUANTUM = 4.0
# (pitch, onset, duration) in ticks from a bar line: the one-bar phrase of test_live_jack.
PHRASE = [(62, 0, 200), (66, 240, 200), (69, 480, 400), (71, 960, 200), (69, 1200, 200), (66, 1440, 400)]
PRESET = """name = "Link test"
description = "A tempo for the session"
[engine]
mode = "call_response"
silence_beats = 1.0
response_start = "bar"
response_bars = 1
[model]
generator = "markov"
[clock]
source = "link"
bpm = {bpm}
"""


class PeerProcess:
    """The test's Link peer in its own process."""

    def __init__(self, bpm: float) -> None:
        self.process = subprocess.Popen([sys.executable, str(HERE / "link_peer.py"), str(bpm), str(QUANTUM)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = json.loads(self.process.stdout.readline())
        if not ready.get("ready"):
            raise RuntimeError(f"the peer did not start: {ready}")

    def ask(self, cmd: str, **args: Any) -> dict:
        self.process.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


class Daw:
    """The DAW's side over JACK: plays into Companion In; keeps what comes out of Companion Out, each message
    stamped by Companion's JACK client at its frame (not when a Python thread woke)."""

    def __init__(self, name_in: str, name_out: str) -> None:
        from companion.midi.ports import open_input, open_output

        self.received: list[tuple[list[int], int]] = []
        self.lock = threading.Lock()
        # stamped at its frame: where in its period a note sits (a period is 5.3 ms at the tests' 256 frames)
        self.inp = open_input("jack", port=name_out, callback=self._keep, client_name="link-daw",
                              virtual_name="daw in", frame_stamps=True)
        self.out = open_output("jack", port=name_in, client_name="link-daw", virtual_name="daw out")
        self.send = self.out.send

    def _keep(self, data: list[int], time_ns: int) -> None:
        with self.lock:
            self.received.append((data, time_ns))

    def messages(self) -> list[tuple[list[int], int]]:
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        self.inp.close()
        self.out.close()


def since(player: Daw, ns: int) -> list[tuple[list[int], int]]:
    """What arrived from Companion Out at or after `ns`."""
    return [(d, t) for d, t in player.messages() if t >= ns]


def play_phrase(player: Daw, peer: PeerProcess, bpm: float) -> int:
    """The phrase from the peer's next bar line (at least 0.3 s ahead); returns that bar line's ns."""
    bar_ns = peer.ask("bars_after", ns=time.monotonic_ns() + 300_000_000, count=1)["bars_ns"][0]
    tick_ns = 60e9 / bpm / 480
    events = [(bar_ns + round(on * tick_ns), [0x90, p, 96]) for p, on, _ in PHRASE]
    events += [(bar_ns + round((on + d) * tick_ns), [0x80, p, 0]) for p, on, d in PHRASE]
    play_at(player.send, events)
    return bar_ns


def answer(runtime: Any, player: Daw, peer: PeerProcess, bpm: float) -> dict:
    """One phrase, its answer: the answer's first note against where the peer's timeline puts it: the peer's bar
    line, plus the note's planned offset from the bar (a rest the model opens with, or the micro-timing the Markov
    responder takes over from the phrase, which reached Companion over JACK a tick or two after the beat)."""
    answers_before = len(runtime.planned_answers)
    phrase_bar_ns = play_phrase(player, peer, bpm)
    phrase_end_ns = phrase_bar_ns + round(1920 * 60e9 / bpm / 480)
    if not poll(lambda: len(runtime.planned_answers) > answers_before, 10):
        return {"error": "no answer was planned"}
    tag, start_ticks, _ = runtime.planned_answers[-1]
    planned_ns = runtime.clock.timebase().ns_at(start_ticks)
    planned_bar_ns = peer.ask("bar_near", ns=planned_ns)["bar_ns"]
    # The answer's notes as the scheduler queues them (before they play): the first one's offset from the bar.
    queued: set[int] = set()

    def first_played() -> list:
        queued.update(n.start_ticks for n, t in runtime.scheduler.planned() if t == tag)
        return note_ons(since(player, phrase_end_ns))

    first = poll(first_played, max(2.0, (planned_ns - time.monotonic_ns()) / 1e9 + 2), 0.001)
    if not first or not queued:
        return {"error": f"no answer came back from Companion Out (queued: {sorted(queued)[:3]})"}
    arrived_ns = first[0][1]
    offset_ns = round((min(queued) - start_ticks) * 60e9 / bpm / 480)
    bar_ns = peer.ask("bar_near", ns=arrived_ns - offset_ns)["bar_ns"]
    time.sleep(max(0.0, (planned_ns - time.monotonic_ns()) / 1e9) + 60 * QUANTUM / bpm + 0.2)  # the answer ends
    return {"first_note_vs_peer_bar_ms": (arrived_ns - offset_ns - bar_ns) / 1e6,
            "first_note_offset_ticks": min(queued) - start_ticks,
            "first_note_vs_bar_line_ms": (arrived_ns - peer.ask("bar_near", ns=arrived_ns)["bar_ns"]) / 1e6,
            "planned_vs_peer_bar_ms": (planned_ns - planned_bar_ns) / 1e6,
            "first_note_vs_planned_ms": (arrived_ns - offset_ns - planned_ns) / 1e6}


def main() -> int:
    if not only_loopback():
        print(json.dumps({"error": "not in a loopback-only network namespace: Link is not started"}))
        return 2
    from companion.app import build_runtime
    from companion.core.engine import EngineSettings
    from companion.live.intents import LoadPreset
    from companion.live.runtime import RuntimeConfig

    config_dir = Path(tempfile.mkdtemp(prefix="companion-link-"))
    (config_dir / "presets").mkdir()
    (config_dir / "presets" / "link-test.toml").write_text(PRESET.format(bpm=PRESET_BPM))
    os.environ["COMPANION_CONFIG_DIR"] = str(config_dir)
    result: dict[str, Any] = {}
    peer = PeerProcess(PEER_BPM)
    # Link keeps the session that is older by more than half a second (a closer call goes by session id): the
    # peer's session is the one Companion finds when it joins.
    time.sleep(1.0)
    tag = uuid.uuid4().hex[:8]
    name_in, name_out = f"Companion In {tag}", f"Companion Out {tag}"
    settings = EngineSettings(seed=3, silence_beats=1.0, response_bars=1, response_start="bar")
    started_ns = time.monotonic_ns()
    # --timed-output: notes written at their frame, so on the bar within 2 ms whatever JACK's period (untimed output
    # leaves on a period's start, up to half a period off the bar: 2.7 ms at the tests' 256 frames)
    runtime = build_runtime(RuntimeConfig(backend="jack", clock="link", bpm=120.0, model="markov", send_clock=True,
                                          timed_output=True, in_name=name_in, out_name=name_out), settings).start()
    player = None
    try:
        # 1. the session's tempo
        taken = poll(lambda: abs(runtime.clock.timebase().bpm - PEER_BPM) < 0.05, 5)
        result["tempo_taken_s"] = (time.monotonic_ns() - runtime.clock.source.joined_ns) / 1e9 if taken else None
        result["runtime_built_s"] = (runtime.clock.source.joined_ns - started_ns) / 1e9
        result["bpm_after_join"] = runtime.clock.bpm
        poll(lambda: runtime.snapshot()["link"]["peers"] >= 1, 5)
        snap = runtime.snapshot()
        result["snapshot_clock"], result["snapshot_link"] = snap["clock"], snap["link"]
        player = Daw(name_in, name_out)
        time.sleep(0.5)  # the join's phase alignment has settled (a jump voids plans: not what is measured)
        # 2. answers on the peer's bar lines
        result["answers"] = [answer(runtime, player, peer, PEER_BPM) for _ in range(3)]
        # 3. the peer changes the tempo
        changed_ns = time.monotonic_ns()
        peer.ask("tempo", bpm=NEW_PEER_BPM)
        followed = poll(lambda: abs(runtime.clock.timebase().bpm - NEW_PEER_BPM) < 0.05, 5)
        result["tempo_followed_s"] = (time.monotonic_ns() - changed_ns) / 1e9 if followed else None
        result["answers_after_change"] = [answer(runtime, player, peer, NEW_PEER_BPM) for _ in range(2)]
        # 4. a preset switch in Companion sets a tempo: the session takes it
        runtime.post_intent(LoadPreset("link-test"))
        proposed_ns = time.monotonic_ns()
        proposed = poll(lambda: abs(peer.ask("state")["bpm"] - PRESET_BPM) < 0.05, 10, 0.01)
        result["tempo_proposed_s"] = (time.monotonic_ns() - proposed_ns) / 1e9 if proposed else None
        result["peer_bpm_after_proposal"] = peer.ask("state")["bpm"]
        # 5. start/stop: the peer starts the session, then stops it while Companion answers
        result["transport"] = start_stop(runtime, player, peer)
        # 6. the UI's clock chooser: leave the session for the internal clock, then join it again
        result["chooser"] = chooser(runtime, peer)
        # 7. `companion ports --link`: the session seen from a third process (Companion and the peer in it)
        listed = subprocess.run([sys.executable, "-m", "companion", "ports", "--link"], capture_output=True,
                                text=True, timeout=60)
        result["ports_link_line"] = next((line for line in listed.stdout.splitlines() if "Ableton Link" in line),
                                         listed.stdout[-300:] + listed.stderr[-300:])
    finally:
        runtime.close()
        if player is not None:
            result["left_sounding"] = left_sounding(player.messages())
            player.close()
        peer.close()
    print(json.dumps(result))
    return 0


def chooser(runtime: Any, peer: PeerProcess) -> dict:
    from companion.live.intents import SetClock

    out: dict[str, Any] = {}
    runtime.post_intent(SetClock("internal"))
    out["left"] = bool(poll(lambda: runtime.snapshot()["clock"] == "internal" and peer.ask("state")["peers"] == 0,
                            5, 0.01))
    peer.ask("tempo", bpm=REJOIN_BPM)  # the session moves on without Companion (its internal clock keeps 111)
    out["peer_alone"] = peer.ask("state")
    time.sleep(0.5)  # a jam goes on a while before Companion comes back
    asked_ns = time.monotonic_ns()
    runtime.post_intent(SetClock("link"))
    # In the session again: Companion has a peer and the session's tempo (the peer's 133 as a rule; Link lets the
    # most recent timeline win, so the measure is that both agree, not which).
    joined = poll(lambda: runtime.snapshot()["clock"] == "link" and (runtime.snapshot()["link"] or {}).get("peers")
                  and abs(runtime.clock.bpm - peer.ask("state")["bpm"]) < 0.05, 5, 0.01)
    out["rejoined_s"] = (time.monotonic_ns() - asked_ns) / 1e9 if joined else None
    out["link_after"] = runtime.snapshot()["link"]
    out["bpm_after"], out["peer_after"] = runtime.clock.bpm, peer.ask("state")
    return out


def start_stop(runtime: Any, player: Daw, peer: PeerProcess) -> dict:
    out: dict[str, Any] = {"running_before": runtime.clock.running, "epoch_before": runtime.clock.epoch}
    before_ns = time.monotonic_ns()
    state = peer.ask("play")
    start_ns = state["beat0_ns"]
    out["peer_start_after_request_ms"] = (start_ns - state["transport_ns"]) / 1e6
    out["started"] = bool(poll(lambda: runtime.clock.epoch != out["epoch_before"] and runtime.clock.running, 5))
    poll(lambda: time.monotonic_ns() > start_ns + 50_000_000, 10)
    out["bar1_vs_peer_start_ms"] = (runtime.clock.timebase().ns_at(0) - start_ns) / 1e6
    # Our MIDI clock ran before (no start/stop seen yet); from the session's start on: FA, then pulses from bar 1.
    clock_out = [(d, t) for d, t in since(player, start_ns - 5_000_000) if d[0] in (0xFA, 0xFB, 0xF8, 0xFC)]
    out["pulses_before_start"] = len([t for t in since(player, before_ns) if t[0][0] == 0xF8 and t[1] < start_ns])
    out["clock_after_start"] = [d[0] for d, _ in clock_out[:2]]
    out["clock_window_ms"] = [(d[0], round((t - start_ns) / 1e6, 2)) for d, t in clock_out[:4]]
    first_pulse = next((t for d, t in clock_out if d[0] == 0xF8), None)
    out["first_pulse_vs_peer_start_ms"] = None if first_pulse is None else (first_pulse - start_ns) / 1e6
    # An answer in flight, then the stop.
    bpm = runtime.clock.bpm
    answers_before = len(runtime.planned_answers)
    play_phrase(player, peer, bpm)
    poll(lambda: len(runtime.planned_answers) > answers_before, 10)
    poll(lambda: note_ons(since(player, time.monotonic_ns() - 50_000_000)), 5)
    stop_ns = peer.ask("stop")["transport_ns"]
    poll(lambda: not runtime.clock.running, 5)
    out["running_after_stop"] = runtime.clock.running
    time.sleep(1.0)
    after = [t for _, t in note_ons(since(player, stop_ns + 20_000_000))]
    out["note_ons_after_stop"] = len(after)
    out["fc_after_stop"] = any(d[0] == 0xFC for d, _ in since(player, stop_ns))
    out["left_sounding_after_stop"] = left_sounding(player.messages())
    return out


if __name__ == "__main__":
    raise SystemExit(main())
