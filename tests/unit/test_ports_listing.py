"""`companion ports`: what each backend can do, and what `auto` would pick, in words a musician can act on."""

from __future__ import annotations

from companion.midi.backends import _WHY_WINMM, find_loopback
from companion.midi.ports import BackendInfo, format_backends


def test_listing_names_ports_and_the_reason_a_backend_is_unusable() -> None:
    infos = [
        BackendInfo("alsa", True, False, False, why="the ALSA sequencer (/dev/snd/seq) is missing"),
        BackendInfo("jack", True, True, True, inputs=("daw:out",), outputs=("synth:in",)),
        BackendInfo("coremidi", False, False, False, why="python-rtmidi was built without coremidi"),
        BackendInfo("winmm", False, False, False, why="python-rtmidi was built without winmm"),
    ]
    text = format_backends(infos)
    assert "alsa: not usable now" in text and "/dev/snd/seq" in text
    assert "jack: usable, virtual ports" in text and "daw:out" in text and "synth:in" in text
    assert "Companion's ports: " in text  # its own JACK client where the shim is built, else rtmidi's and why
    assert text.rstrip().endswith("auto picks: jack") or "auto picks: jack" in text


def test_windows_says_to_use_a_loopback_driver() -> None:
    infos = [
        BackendInfo("alsa", False, False, False, why="built without alsa"),
        BackendInfo("jack", False, False, False, why="built without jack"),
        BackendInfo("coremidi", False, False, False, why="built without coremidi"),
        BackendInfo("winmm", True, True, False, inputs=("loopMIDI Port",), outputs=("loopMIDI Port",),
                    why="Windows MIDI cannot create virtual ports: install a loopback driver such as loopMIDI"),
    ]
    text = format_backends(infos)
    assert "winmm: usable, named ports only" in text and "loopMIDI" in text


def test_nothing_usable_says_why_for_each_backend() -> None:
    infos = [BackendInfo(n, True, False, False, why=f"{n} is down") for n in ("alsa", "jack", "coremidi", "winmm")]
    text = format_backends(infos)
    assert "auto picks nothing" in text


def _winmm(inputs: tuple[str, ...], outputs: tuple[str, ...]) -> BackendInfo:
    return BackendInfo("winmm", True, True, False, inputs=inputs, outputs=outputs, why=_WHY_WINMM)


def test_windows_names_both_loopbacks_and_finds_their_ports_by_name() -> None:
    assert "Windows MIDI Services" in _WHY_WINMM and "MIDI Settings" in _WHY_WINMM and "loopMIDI" in _WHY_WINMM
    assert "midi loopback create" in _WHY_WINMM
    gs = "Microsoft GS Wavetable Synth"
    # Two MIDI 1.0 loopbacks named like the virtual ports (loopMIDI, or the MIDI Settings app's basic loopback).
    named = _winmm(("Keystep", "Companion In", "Companion Out"), (gs, "Companion In", "Companion Out"))
    assert find_loopback(named) == ("Companion In", "Companion Out")
    # A Windows MIDI Services loopback pair: Companion takes side B, the DAW side A.
    pair = _winmm(("Companion (A)", "Companion (B)"), (gs, "Companion (A)", "Companion (B)"))
    assert find_loopback(pair) == ("Companion (B)", "Companion (B)")
    assert find_loopback(_winmm(("loopMIDI Port",), ("loopMIDI Port",))) is None
    text = format_backends([BackendInfo(n, False, False, False, why="built without it")
                            for n in ("alsa", "jack", "coremidi")] + [pair])
    assert "loopback ports 'Companion (B)' (in) and 'Companion (B)' (out)" in text
