"""Thru passes the player's pedals and bends on; whenever Companion ends the notes (panic, CC123, a preset change,
any catchable ending signal) it sets them back too. Over JACK."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from midi_wire import left_sounding, start_headless

from companion.app import build_runtime
from companion.core.engine import PanicIntent
from companion.live.runtime import RuntimeConfig
from companion.presets.preset import ENV_CONFIG_DIR, load_preset

pytestmark = pytest.mark.jack

# Sustain, sostenuto and soft pedals down, the mod wheel up, the pitch bent up: what a player holds mid-phrase.
HELD = [[0xB0, 64, 127], [0xB0, 66, 127], [0xB0, 67, 127], [0xB0, 1, 90], [0xE0, 0, 112]]


def held_controllers(messages: list[tuple[list[int], int]]) -> dict[tuple[int, int], int]:
    """(channel, control; -1 for pitch bend) -> the last value heard, for each one left away from rest."""
    last: dict[tuple[int, int], int] = {}
    for data, _ in messages:
        kind, channel = data[0] & 0xF0, data[0] & 0x0F
        if kind == 0xB0 and data[1] in (1, 64, 66, 67):
            last[(channel, data[1])] = data[2]
        elif kind == 0xE0:
            last[(channel, -1)] = (data[2] << 7 | data[1]) - 8192
    return {key: value for key, value in last.items() if value != 0}


def _hold(client: Any) -> None:
    """The player holds a note with every held controller set; thru has passed them all on."""
    assert client.send_until([0x90, 60, 100], lambda: left_sounding(client.messages()) == 1)
    for data in HELD:
        client.send(data)
    assert client.wait_for(lambda m: len(held_controllers(m)) == len(HELD), 5.0), client.messages()


def _names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"Companion In {tag}", f"Companion Out {tag}"


@pytest.mark.parametrize("end", ["panic", "all notes off from the player", "program change to a non-thru preset"])
def test_notes_ended_live_set_the_pedals_and_bend_back(end: str, jack_client: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_CONFIG_DIR, str(tmp_path / "config"))  # the shipped presets, not a user's
    preset = load_preset("folk-call-response")  # its bank: program 0 on channel 16 is itself, thru off
    settings = preset.engine_settings().replace(thru=True, input_channel=None, silence_beats=64.0)
    name_in, name_out = _names()
    runtime = build_runtime(RuntimeConfig(backend="jack", bpm=240.0, model="markov", in_name=name_in,
                                          out_name=name_out), settings, preset).start()
    try:
        client = jack_client("player").connect_out(name_in).connect_in(name_out)
        _hold(client)
        if end == "panic":
            runtime.post_intent(PanicIntent())
        elif end == "all notes off from the player":
            client.send([0xB0, 123, 0])
        else:
            client.send([0xCF, 0])  # switches at the next bar line: a second at 240 BPM
        assert client.wait_for(lambda m: not held_controllers(m), 5.0), \
            f"left away from rest after the {end}: {held_controllers(client.messages())}"
        assert left_sounding(client.messages()) == 0
        if end.startswith("program"):
            assert runtime.presets.name == "folk-call-response" and not runtime.engine.settings.thru
    finally:
        runtime.close()


# SIGTERM as before; QUIT, ABRT and USR1 used to end the process with the notes and pedals left on.
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGQUIT", "SIGABRT", "SIGUSR1"])
def test_an_ending_signal_ends_the_notes_and_sets_the_pedals_back(sig: str, jack_client: Any, tmp_path: Path) -> None:
    preset = tmp_path / "thru.toml"
    preset.write_text('name = "thru"\n\n[midi]\nthru = true\n')
    names = _names()
    process = start_headless(names, "--preset", str(preset))
    try:
        client = jack_client("player").connect_out(names[0]).connect_in(names[1])
        _hold(client)
        process.send_signal(getattr(signal, sig))
        assert process.wait(timeout=10) == 0
        assert not held_controllers(client.messages()), f"left away from rest after {sig}"
        assert left_sounding(client.messages()) == 0
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate(timeout=5)[0]
    assert "Traceback" not in output, output
