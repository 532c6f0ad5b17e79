"""Takes through the real runtime (loopback ports): the record key with and without --record, and the tempo map."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import miditoolkit

from companion.core.engine import EngineSettings
from companion.live.intents import SetRecording
from companion.live.runtime import Runtime
from companion.midi.clock import InternalClock
from companion.midi.loopback import LoopbackPorts
from companion.takes.recording import TakeRecorder
from companion.worker.generators import MarkovGenerator

Poller = Callable[..., Any]  # the `poll` fixture (tests/integration/conftest.py)


def _rig(recorder: TakeRecorder, record_from_start: bool) -> tuple[Runtime, InternalClock, object]:
    to_engine, from_engine = LoopbackPorts("Companion In"), LoopbackPorts("Companion Out")
    from_engine.open_input(lambda data, time_ns: None)
    clock = InternalClock(120.0)
    runtime = Runtime(EngineSettings(thru=True, silence_beats=64.0, max_bars=None),
                      inputs=[to_engine.open_input], outputs=[from_engine.open_output()],
                      generator=MarkovGenerator(), clock=clock, recorder=recorder,
                      record_from_start=record_from_start)
    return runtime, clock, to_engine.open_output()


def _play(player: object, pitches: list[int]) -> None:
    for pitch in pitches:
        player.send([0x90, pitch, 100])
        time.sleep(0.03)
        player.send([0x80, pitch, 0])
        time.sleep(0.01)


def _takes(folder: Path) -> list[Path]:
    return sorted(folder.glob("take-*.mid"), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []


def test_the_record_key_without_record_dir_saves_into_the_default_folder_with_the_tempo_map(tmp_path: Path,
                                                                                          poll: Poller) -> None:
    folder = tmp_path / "Companion takes"  # not made until a take is written
    runtime, clock, player = _rig(TakeRecorder(folder, create=False), record_from_start=False)
    runtime.start()
    try:
        assert runtime.snapshot()["recording"] is False and not folder.exists()
        assert runtime.snapshot()["takes_dir"] == str(folder)
        runtime.post_intent(SetRecording(True))
        assert poll(lambda: runtime.snapshot()["recording"] is True)
        _play(player, [60, 62, 64])
        clock.set_tempo(90.0)  # a tempo change mid-take: the file's tempo map has it
        time.sleep(0.05)
        _play(player, [65, 67])
        runtime.post_intent(SetRecording(False))
        assert poll(lambda: runtime.snapshot()["recording"] is False)
        assert poll(lambda: len(_takes(folder)) == 1, timeout_s=5.0), runtime.snapshot()["log"]
    finally:
        runtime.close()
    midi = miditoolkit.MidiFile(str(_takes(folder)[0]))
    tracks = {inst.name: inst for inst in midi.instruments}
    assert [n.pitch for n in tracks["player"].notes] == [60, 62, 64, 65, 67]
    assert [n.pitch for n in tracks["companion"].notes] == [60, 62, 64, 65, 67]  # thru, as Companion sent it
    tempi = [round(t.tempo, 1) for t in midi.tempo_changes]
    assert tempi[0] == 120.0 and tempi[-1] == 90.0 and len(tempi) == 2, tempi
    # The tempo change sits between the notes played before and after it.
    change_tick = midi.tempo_changes[-1].time
    assert tracks["player"].notes[2].start < change_tick <= tracks["player"].notes[3].start


def test_with_record_dir_the_take_runs_from_the_start_and_the_key_ends_it_keeping_what_was_played(
        tmp_path: Path, poll: Poller) -> None:
    runtime, _, player = _rig(TakeRecorder(tmp_path), record_from_start=True)
    runtime.start()
    try:
        assert runtime.snapshot()["recording"] is True  # the UI shows REC from the first moment
        _play(player, [72, 74])
        runtime.post_intent(SetRecording(False))  # the record key: stop and save, nothing thrown away
        assert poll(lambda: len(_takes(tmp_path)) == 1)
        runtime.post_intent(SetRecording(True))  # and again: a second take
        assert poll(lambda: runtime.snapshot()["recording"] is True)
        _play(player, [76])
    finally:
        runtime.close()  # closing saves the running take too
    takes = _takes(tmp_path)
    assert len(takes) == 2
    first, second = (miditoolkit.MidiFile(str(path)) for path in takes)
    assert [n.pitch for n in first.instruments[0].notes] == [72, 74]
    assert [n.pitch for n in second.instruments[0].notes] == [76]


def test_a_take_folder_that_cannot_be_made_is_a_log_line_not_a_crash(tmp_path: Path, poll: Poller) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    runtime, _, player = _rig(TakeRecorder(blocker / "takes", create=False), record_from_start=False)
    runtime.start()
    try:
        runtime.post_intent(SetRecording(True))
        _play(player, [60])
        runtime.post_intent(SetRecording(False))
        assert poll(lambda: any("could not save the take" in text and "--record" in text
                                 for _, text in runtime.snapshot()["log"]))
        assert not runtime.closed
    finally:
        runtime.close()
