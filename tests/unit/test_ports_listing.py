"""`companion ports`: what each backend can do, and what `auto` would pick, in words a musician can act on."""

from __future__ import annotations

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
