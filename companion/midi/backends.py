"""MIDI backends: which ones work on this machine, which can open virtual ports, and what to do if none does."""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from companion.errors import PortError

BACKENDS = ("alsa", "jack", "coremidi", "winmm")

_ALSA_SEQ_PATH = "/dev/snd/seq"
# Each says how to make its own backend work (not "use the other one": with neither working, that goes round).
_WHY_NO_ALSA_SEQ = f"the ALSA sequencer ({_ALSA_SEQ_PATH}) is missing: load it with `sudo modprobe snd-seq`"
_WHY_NO_JACK = "no JACK server is running: start one (`jackd -d alsa`, QjackCtl, or PipeWire's JACK)"
_WHY_WINMM = (
    "Windows MIDI cannot create virtual ports: make two loopback ports named 'Companion In' and 'Companion Out' "
    "(Windows 11's MIDI Settings app: Windows MIDI Services, a basic MIDI 1.0 loopback each; or the loopMIDI "
    "driver), or one Windows MIDI Services loopback pair named 'Companion' (`midi loopback create`, which makes "
    "'Companion (A)' and '(B)': the DAW uses A), and Companion finds them by name; or pass --in-port / --out-port"
)
# A Windows MIDI Services loopback pair: what goes out on one side comes in on the other; Companion takes side B.
_PAIR_SIDE = "(B)"


def _rtmidi() -> Any:
    """Import rtmidi lazily so the loopback ports (demo, tests) work even where it does not load."""
    try:
        import rtmidi
    except ImportError as err:
        raise PortError(
            f"python-rtmidi could not be loaded ({err}); reinstall it with `pip install python-rtmidi`"
        ) from err
    return rtmidi


def _api(rtmidi: Any, backend: str) -> int:
    return {
        "alsa": rtmidi.API_LINUX_ALSA,
        "jack": rtmidi.API_UNIX_JACK,
        "coremidi": rtmidi.API_MACOSX_CORE,
        "winmm": rtmidi.API_WINDOWS_MM,
    }[backend]


@dataclass(frozen=True)
class BackendInfo:
    """What one backend can do on this machine right now."""

    name: str
    compiled: bool
    usable: bool
    virtual_ports: bool
    inputs: tuple[str, ...] = ()  # ports we can receive from (sources)
    outputs: tuple[str, ...] = ()  # ports we can send to (destinations)
    why: str = ""  # why it is unusable, or what is limited about it


def _probe(backend: str, compiled: set[int], rtmidi: Any) -> BackendInfo:
    api = _api(rtmidi, backend)
    if api not in compiled:
        return BackendInfo(backend, False, False, False, why=f"python-rtmidi was built without {backend}")
    if backend == "alsa" and not os.path.exists(_ALSA_SEQ_PATH):
        return BackendInfo(backend, True, False, False, why=_WHY_NO_ALSA_SEQ)
    try:
        with _libjack_quiet(backend == "jack"):
            midi_in = rtmidi.MidiIn(api, "companion-probe")
            midi_out = rtmidi.MidiOut(api, "companion-probe")
    except rtmidi.RtMidiError as err:
        why = _WHY_NO_JACK if backend == "jack" else f"{backend} failed to start: {err}"
        return BackendInfo(backend, True, False, False, why=why)
    try:
        inputs, outputs = tuple(midi_in.get_ports()), tuple(midi_out.get_ports())
    finally:
        midi_in.delete()
        midi_out.delete()
    virtual = backend != "winmm"
    return BackendInfo(backend, True, True, virtual, inputs, outputs, "" if virtual else _WHY_WINMM)


@contextlib.contextmanager
def _libjack_quiet(quiet: bool) -> Iterator[None]:
    """libjack prints its own lines ("Cannot connect to server socket ...") on stderr when no server runs; the
    probe's verdict is ours to say in one line, so its stderr (file descriptor 2) goes to /dev/null meanwhile."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def list_backends() -> list[BackendInfo]:
    """Every backend with whether it is compiled in and usable now, and the ports it sees."""
    rtmidi = _rtmidi()
    compiled = set(rtmidi.get_compiled_api())
    return [_probe(name, compiled, rtmidi) for name in BACKENDS]


def pick_backend(name: str = "auto", infos: Sequence[BackendInfo] | None = None,
                 platform: str = sys.platform) -> str:
    """Resolve "auto" to the backend that works here (Linux: ALSA, else JACK); check a named one is usable."""
    if name != "auto" and name not in BACKENDS:
        raise PortError(f"unknown MIDI backend {name!r}: choose one of auto, {', '.join(BACKENDS)}")
    by_name = {info.name: info for info in (infos if infos is not None else list_backends())}
    if name != "auto":
        info = by_name[name]
        if not info.usable:
            raise PortError(f"MIDI backend {name} is not usable: {info.why}")
        return name
    if platform.startswith("linux"):
        preference = ["alsa", "jack"]
    elif platform == "darwin":
        preference = ["coremidi", "jack"]
    elif platform.startswith("win"):
        preference = ["winmm"]
    else:
        preference = list(BACKENDS)
    for candidate in preference:
        if by_name[candidate].usable:
            return candidate
    reasons = "; ".join(f"{c}: {by_name[c].why}" for c in preference)
    raise PortError(f"no usable MIDI backend on this machine ({reasons}); any one of these fixes it")


def find_loopback(info: BackendInfo, in_name: str = "Companion In", out_name: str = "Companion Out",
                  pair_root: str = "Companion") -> tuple[str, str] | None:
    """Windows (no virtual ports): the loopback ports made for Companion, found by name as (input, output): two
    MIDI 1.0 loopbacks named like its virtual ports (loopMIDI, or Windows MIDI Services' basic loopback), else
    the B side of a Windows MIDI Services loopback pair `pair_root (A)`/`(B)`; None if neither is there."""
    def named(names: Sequence[str], wanted: str) -> str | None:
        return next((name for name in names if wanted.lower() in name.lower()), None)

    found_in, found_out = named(info.inputs, in_name), named(info.outputs, out_name)
    if found_in and found_out:
        return found_in, found_out
    side = f"{pair_root} {_PAIR_SIDE}"
    found_in, found_out = named(info.inputs, side), named(info.outputs, side)
    return (found_in, found_out) if found_in and found_out else None


def find_port(names: Sequence[str], wanted: str, direction: str, backend: str) -> int:
    """Index of the first port whose name contains `wanted` (any case), else a PortError that helps."""
    needle = wanted.lower()
    for index, name in enumerate(names):
        if needle in name.lower():
            return index
    seen = ", ".join(repr(n) for n in names) if names else "none"
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(needle, list(lowered), n=1, cutoff=0.3)
    hint = f" Did you mean {lowered[close[0]]!r}?" if close else ""
    flag = "--in-port" if direction == "input" else "--out-port"
    raise PortError(
        f"no MIDI {direction} port matching {wanted!r} on {backend}. Ports that exist: {seen}.{hint} "
        f"Pass part of one of these names to {flag}, or leave it out to open a virtual port."
    )


def jack_period_ns(default_frames: int = 64, default_rate: int = 48000) -> int:
    """The JACK server's period (buffer size / sample rate), from jack_bufsize and jack_samplerate if present."""
    import shutil
    import subprocess

    frames, rate = default_frames, default_rate
    try:
        if shutil.which("jack_bufsize") and shutil.which("jack_samplerate"):
            def ask(tool: str) -> int:
                return int(subprocess.run([tool], capture_output=True, text=True, timeout=5).stdout.split()[-1])

            frames, rate = ask("jack_bufsize"), ask("jack_samplerate")
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        frames, rate = default_frames, default_rate
    return round(1e9 * frames / rate)


def format_backends(infos: Sequence[BackendInfo] | None = None) -> str:
    """`companion ports`: each backend, whether it works and can open virtual ports, and the ports it sees."""
    infos = list_backends() if infos is None else infos
    lines: list[str] = []
    for info in infos:
        if not info.compiled:
            state = "not available in this build"
        elif not info.usable:
            state = "not usable now"
        else:
            state = "usable, virtual ports" if info.virtual_ports else "usable, named ports only"
        lines.append(f"{info.name}: {state}")
        if info.why:
            lines.append(f"  why: {info.why}")
        if info.usable and info.name == "jack":
            lines.append("  " + _jack_client_line())
        if info.usable and info.name == "winmm":
            found = find_loopback(info)
            lines.append(f"  Companion's ports: the loopback ports {found[0]!r} (in) and {found[1]!r} (out)" if found
                         else "  Companion's ports: no loopback ports for Companion yet (see why above)")
        if info.usable:
            lines.append("  ports you can listen to (--in-port): " + (", ".join(info.inputs) or "none"))
            lines.append("  ports you can play to (--out-port): " + (", ".join(info.outputs) or "none"))
    try:
        lines.append(f"auto picks: {pick_backend('auto', infos)}")
    except PortError as err:
        lines.append(f"auto picks nothing: {err.message}")
    return "\n".join(lines)


def _jack_client_line() -> str:
    """How Companion's JACK ports are made here: its own client, or rtmidi's (and why)."""
    from companion.midi.jack_shim import available

    own, why = available()
    if own:
        return "Companion's ports: one JACK client of its own, 'companion' (companion:Companion In / Out)"
    return f"Companion's ports: through rtmidi, one JACK client per port ({why})"
