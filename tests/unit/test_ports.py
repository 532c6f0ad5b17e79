"""Ports without a server: backend choice, name matching, the ALSA failure path, loopback cables."""

from __future__ import annotations

import os
import threading

import pytest

from companion.errors import PortError
from companion.midi.loopback import LoopbackPorts
from companion.midi.ports import (
    BackendInfo,
    find_port,
    list_backends,
    open_input,
    open_output,
    pick_backend,
)


def _info(name: str, usable: bool, why: str = "") -> BackendInfo:
    return BackendInfo(name, True, usable, usable and name != "winmm", why=why)


ALL_DOWN = [_info("alsa", False, "no seq"), _info("jack", False, "no server"),
            _info("coremidi", False, "not mac"), _info("winmm", False, "not windows")]


def test_auto_prefers_alsa_then_jack_on_linux() -> None:
    infos = [_info("alsa", True), _info("jack", True), *ALL_DOWN[2:]]
    assert pick_backend("auto", infos, platform="linux") == "alsa"
    infos = [ALL_DOWN[0], _info("jack", True), *ALL_DOWN[2:]]
    assert pick_backend("auto", infos, platform="linux") == "jack"


def test_auto_on_macos_and_windows() -> None:
    infos = [*ALL_DOWN[:2], _info("coremidi", True), _info("winmm", True)]
    assert pick_backend("auto", infos, platform="darwin") == "coremidi"
    assert pick_backend("auto", infos, platform="win32") == "winmm"


def test_no_usable_backend_says_why_for_each() -> None:
    with pytest.raises(PortError, match="alsa: no seq; jack: no server"):
        pick_backend("auto", ALL_DOWN, platform="linux")


def test_named_backend_must_be_usable_and_known() -> None:
    with pytest.raises(PortError, match="jack is not usable: no server"):
        pick_backend("jack", ALL_DOWN)
    with pytest.raises(PortError, match="unknown MIDI backend 'oss'"):
        pick_backend("oss", ALL_DOWN)
    with pytest.raises(PortError, match="unknown MIDI backend"):
        open_output("oss", port=None)


def test_find_port_substring_case_insensitive_first_match() -> None:
    names = ["system:midi_capture_1", "Ableton:Live Out 1", "Ableton:Live Out 2"]
    assert find_port(names, "live out", "input", "jack") == 1


def test_find_port_error_lists_ports_and_suggests_closest() -> None:
    with pytest.raises(PortError) as caught:
        find_port(["loopMIDI Port 1", "Microsoft GS Wavetable Synth"], "loopmidi port 2x", "output", "winmm")
    text = str(caught.value)
    assert "'loopMIDI Port 1'" in text and "Did you mean 'loopMIDI Port 1'?" in text and "--out-port" in text


def test_find_port_with_no_ports_says_none() -> None:
    with pytest.raises(PortError, match="Ports that exist: none"):
        find_port([], "x", "input", "alsa")


@pytest.mark.skipif(os.path.exists("/dev/snd/seq"), reason="this machine has an ALSA sequencer")
def test_alsa_without_sequencer_is_unusable_with_a_clear_message() -> None:
    alsa = {b.name: b for b in list_backends()}["alsa"]
    assert alsa.compiled and not alsa.usable and not alsa.virtual_ports
    assert "/dev/snd/seq" in alsa.why and "modprobe snd-seq" in alsa.why
    with pytest.raises(PortError, match="modprobe snd-seq"):
        open_input("alsa", port=None, callback=lambda data, time_ns: None)
    with pytest.raises(PortError, match="ALSA"):
        open_output("alsa", port=None)


def test_loopback_delivers_sends_to_inputs_with_a_timestamp() -> None:
    cable = LoopbackPorts("Companion In")
    got: list[tuple[list[int], int]] = []
    midi_in = cable.open_input(lambda data, time_ns: got.append((data, time_ns)))
    midi_out = cable.open_output()
    midi_out.send([0x90, 60, 100])
    midi_out.send((0xF8,))
    assert [d for d, _ in got] == [[0x90, 60, 100], [0xF8]]
    assert got[0][1] <= got[1][1] and got[0][1] > 0
    midi_in.close()
    midi_out.send([0x80, 60, 0])
    assert len(got) == 2
    midi_out.close()
    with pytest.raises(PortError, match="'Companion In'.*closed"):
        midi_out.send([0x80, 60, 0])


def test_loopback_output_is_safe_from_many_threads() -> None:
    cable = LoopbackPorts()
    got: list[list[int]] = []
    cable.open_input(lambda data, time_ns: got.append(data))
    midi_out = cable.open_output()
    def blast() -> None:
        for _ in range(200):
            midi_out.send([0x90, 1, 1])

    threads = [threading.Thread(target=blast) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 800


def test_input_callback_must_be_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        LoopbackPorts().open_input(None)  # type: ignore[arg-type]
