"""What a newcomer sees from the real runtime (loopback ports): the meters, takes and replays (issue 15)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import miditoolkit
import pytest

from companion.cli import main
from companion.core.engine import EngineSettings
from companion.live.intents import SetRecording
from companion.live.runtime import Runtime
from companion.midi.clock import InternalClock
from companion.midi.loopback import LoopbackPorts
from companion.takes.recording import TakeRecorder
from companion.tui.meters import meters_text, transport_text
from companion.worker.generators import MarkovGenerator, answering_model
from companion.worker.process import ModelProcess

Poller = Callable[..., Any]  # the `poll` fixture (tests/integration/conftest.py)


def test_the_malformed_meter_counts_broken_bytes_not_the_notes_played(poll: Poller) -> None:
    to_engine, from_engine = LoopbackPorts("Companion In"), LoopbackPorts("Companion Out")
    from_engine.open_input(lambda data, time_ns: None)
    runtime = Runtime(EngineSettings(thru=True, silence_beats=64.0, max_bars=None),
                      inputs=[to_engine.open_input], outputs=[from_engine.open_output()],
                      generator=MarkovGenerator(), clock=InternalClock(120.0))
    player = to_engine.open_output()
    with runtime:
        for pitch in range(60, 68):  # 8 notes: 16 messages decoded, none lost
            player.send([0x90, pitch, 100])
            player.send([0x80, pitch, 0])
        assert poll(lambda: runtime.snapshot()["counters"]["notes_in"] == 8)
        assert "malformed      0" in meters_text(runtime.snapshot()).plain
        player.send([0x90, 60])  # a truncated note-on: really broken
        assert poll(lambda: "malformed      1" in meters_text(runtime.snapshot()).plain), meters_text(
            runtime.snapshot()).plain


def test_a_takes_answers_replayed_from_its_sidecar_are_the_notes_played_live(tmp_path: Path, poll: Poller) -> None:
    """`companion generate continue take.mid --replay take.json` gives the live answer again, to the tick:
    the take keeps what the scheduler played at its planned ticks, the file writer applies the same re-strike."""
    to_engine, from_engine = LoopbackPorts("Companion In"), LoopbackPorts("Companion Out")
    from_engine.open_input(lambda data, time_ns: None)
    runtime = Runtime(EngineSettings(silence_beats=1.0, max_bars=None, response_bars=2, seed=7),
                      inputs=[to_engine.open_input], outputs=[from_engine.open_output()],
                      generator=MarkovGenerator(), clock=InternalClock(240.0),
                      recorder=TakeRecorder(tmp_path), record_from_start=True)
    player = to_engine.open_output()
    with runtime:
        for pitch in (60, 62, 64, 65, 67, 65, 64, 62, 60, 67, 64, 60):
            player.send([0x90, pitch, 100])
            time.sleep(0.06)
            player.send([0x80, pitch, 0])
        assert poll(lambda: runtime.snapshot()["counters"]["answers"] == 1, timeout_s=5.0)
        # The whole answer (2 bars at 240 BPM) is played once nothing is planned and nothing sounds.
        assert poll(lambda: runtime.snapshot()["counters"]["notes_out"] > 0 and not runtime.scheduler.planned()
                    and not runtime.scheduler.sounding(), timeout_s=10.0)
    (take,) = tmp_path.glob("take-*.mid")
    again = tmp_path / "again.mid"
    assert main(["generate", "continue", str(take), "--replay", str(take.with_suffix(".json")),
                 "-o", str(again)]) == 0

    def answer(path: Path) -> list[tuple[int, int, int, int]]:
        track = {inst.name: inst for inst in miditoolkit.MidiFile(str(path)).instruments}["companion"]
        return sorted((n.start, n.end, n.pitch, n.velocity) for n in track.notes)

    live = answer(take)
    assert live and answer(again) == live


def test_an_empty_take_says_it_was_empty_and_writes_nothing(tmp_path: Path, poll: Poller) -> None:
    to_engine, from_engine = LoopbackPorts("Companion In"), LoopbackPorts("Companion Out")
    runtime = Runtime(EngineSettings(), inputs=[to_engine.open_input], outputs=[from_engine.open_output()],
                      generator=MarkovGenerator(), clock=InternalClock(120.0), recorder=TakeRecorder(tmp_path))
    with runtime:
        runtime.post_intent(SetRecording(True))
        assert poll(lambda: runtime.snapshot()["recording"] is True)
        runtime.post_intent(SetRecording(False))  # R twice, nothing played
        assert poll(lambda: any("empty" in text and "no file" in text for _, text in runtime.snapshot()["log"]))
        assert not any("saving" in text for _, text in runtime.snapshot()["log"])
    assert list(tmp_path.iterdir()) == []


def test_the_model_shown_says_loading_until_the_worker_has_loaded_it() -> None:
    models = ModelProcess("markov")  # a worker process of its own: a moment to start even for Markov
    try:
        shown = transport_text({"generator": answering_model("call_response", models)}, recording=False).plain
        assert "loading models" in shown, shown
        assert models.wait_ready(60.0)
        assert answering_model("call_response", models) == "markov"
    finally:
        models.close()


def test_a_replay_says_when_the_live_answers_were_cut_short(tmp_path: Path, poll: Poller,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    to_engine, from_engine = LoopbackPorts("Companion In"), LoopbackPorts("Companion Out")
    from_engine.open_input(lambda data, time_ns: None)
    runtime = Runtime(EngineSettings(silence_beats=1.0, max_bars=None, response_bars=4, on_player_resume="stop"),
                      inputs=[to_engine.open_input], outputs=[from_engine.open_output()],
                      generator=MarkovGenerator(), clock=InternalClock(240.0),
                      recorder=TakeRecorder(tmp_path), record_from_start=True)
    player = to_engine.open_output()
    with runtime:
        for pitch in (60, 62, 64, 65, 67, 65, 64, 62):
            player.send([0x90, pitch, 100])
            time.sleep(0.06)
            player.send([0x80, pitch, 0])
        assert poll(lambda: runtime.snapshot()["counters"]["notes_out"] > 0, timeout_s=10.0)
        player.send([0x90, 72, 100])  # the player comes back in: the answer stops
        time.sleep(0.1)
        player.send([0x80, 72, 0])
    (take,) = tmp_path.glob("take-*.mid")
    sidecar = json.loads(take.with_suffix(".json").read_text())
    assert sidecar["answers"][0]["cut"][0][0] == "stop"
    with caplog.at_level(logging.WARNING, logger="companion"):
        assert main(["generate", "continue", str(take), "--replay", str(take.with_suffix(".json")),
                     "-o", str(tmp_path / "again.mid")]) == 0
    assert any("were stopped or ducked live" in record.getMessage() for record in caplog.records)
