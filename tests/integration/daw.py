"""A DAW in C for the JACK tests (daw_client.c): plays MIDI at exact frames, records every byte by frame."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

SOURCE = Path(__file__).with_name("daw_client.c")
RATE = 48_000  # the test server's sample rate (conftest's jackd -r 48000)

Heard = list[tuple[int, list[int]]]  # (frame from the start, bytes)


def build(folder: Path) -> Path:
    """Compile the DAW (cc and libjack.so.0 are what building Companion's own JACK client needs too)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler is needed for the JACK tests' DAW (apt-get install gcc)"
    binary = folder / "daw_client"
    subprocess.run([compiler, "-O2", "-std=c11", "-D_GNU_SOURCE", "-o", str(binary), str(SOURCE),
                    "-l:libjack.so.0"], check=True, capture_output=True, text=True)
    return binary


class Daw:
    """One run of the DAW: `start()` connects and plays in the background, `heard()` waits for the end."""

    def __init__(self, binary: Path, name: str, to_port: str, from_port: str,
                 script: Sequence[tuple[int, Sequence[int]]], end_frame: int, lead_frames: int = RATE // 4) -> None:
        self.args = [str(binary), name, to_port, from_port, str(lead_frames)]
        lines = [f"{frame} {' '.join(str(b) for b in data)}" for frame, data in sorted(script, key=lambda e: e[0])]
        self.text = "\n".join([*lines, f"end {end_frame}", ""])
        self.timeout_s = end_frame / RATE + 30
        self.process: subprocess.Popen[str] | None = None
        self.late = 0

    def start(self) -> Daw:
        self.process = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        assert self.process.stdin is not None
        self.process.stdin.write(self.text)
        self.process.stdin.close()
        self.process.stdin = None  # written whole: communicate() must not touch it again
        return self

    def heard(self) -> Heard:
        """Every message heard, by frame from the start (the script's frame 0)."""
        assert self.process is not None
        try:
            out, err = self.process.communicate(timeout=self.timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        assert self.process.returncode == 0, f"the DAW failed ({self.process.returncode}): {err}"
        heard: Heard = []
        for line in out.splitlines():
            fields = line.split()
            if fields[0] == "late":
                self.late = int(fields[1])
            else:
                heard.append((int(fields[0]), [int(b) for b in fields[1:]]))
        return heard


def double_strikes(heard: Heard) -> list[tuple[int, list[int]]]:
    """Messages that can only be a repeat: a note-on of a key already sounding, a note-off of a silent key.

    Companion's output ledger never does either (a re-struck note gets its note-off first), so each one found
    is a message that reached the wire twice.
    """
    sounding: set[tuple[int, int]] = set()
    found = []
    for frame, data in heard:
        kind, channel = data[0] & 0xF0, data[0] & 0x0F
        if kind == 0x90 and data[2] > 0:
            if (channel, data[1]) in sounding:
                found.append((frame, data))
            sounding.add((channel, data[1]))
        elif kind in (0x80, 0x90):
            if (channel, data[1]) not in sounding:
                found.append((frame, data))
            sounding.discard((channel, data[1]))
        elif kind == 0xB0 and data[1] in (120, 123):
            sounding = {key for key in sounding if key[0] != channel}
    return found


PULSE_FRAMES_120 = RATE * 60 // (120 * 24)  # one MIDI clock pulse at 120 BPM: 1000 frames
BEAT_FRAMES_120 = 24 * PULSE_FRAMES_120


def started_clock(start_frame: int, first_pulse_frame: int, end_frame: int,
                  pulse_frames: int = PULSE_FRAMES_120) -> list[tuple[int, list[int]]]:
    """Start (FA) at `start_frame`, then a pulse (F8) every `pulse_frames` from `first_pulse_frame` to the end."""
    return [(start_frame, [0xFA])] + [(frame, [0xF8]) for frame in range(first_pulse_frame, end_frame, pulse_frames)]


def notes(played: Sequence[tuple[int, int, int]], channel: int = 0, velocity: int = 90) -> list[tuple[int, list[int]]]:
    """(pitch, on frame, off frame) -> the note-on and note-off messages."""
    return [event for pitch, on, off in played
            for event in ((on, [0x90 | channel, pitch, velocity]), (off, [0x80 | channel, pitch, 0]))]


def note_on_frames(heard: Heard) -> list[int]:
    return [frame for frame, data in heard if data[0] & 0xF0 == 0x90 and data[2] > 0]
