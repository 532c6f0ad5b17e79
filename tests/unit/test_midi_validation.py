"""Every MIDI file we read passes one validation step (midifile.read_midi): what mido accepts but we cannot use
is a one-line input error (exit 2) naming the file and the problem, never a traceback nor a hang."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from companion.cli import main

NOTE = b"\x00\x90\x3c\x50\x83\x60\x80\x3c\x00"  # middle C, a quarter note at 480 ticks per beat


def smf(path: Path, meta: bytes = b"", division: int = 480, delta: bytes = b"\x00") -> Path:
    """A type-0 file: `meta` (with its delta time `delta`), one note, the end of the track."""
    body = (delta + meta if meta else b"") + NOTE + b"\x00\xff\x2f\x00"
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, division) + b"MTrk" + struct.pack(">I", len(body))
                     + body)
    return path


CASES = {
    "key signature of 8 sharps": (dict(meta=b"\xff\x59\x02\x08\x00"), "Could not decode key"),
    "key signature in mode 2": (dict(meta=b"\xff\x59\x02\x00\x02"), "Could not decode key"),
    "SMPTE division": (dict(division=0xE728), "SMPTE frames"),
    "time signature 0/4": (dict(meta=b"\xff\x58\x04\x00\x02\x18\x08"), "time signature 0/4 cannot be played"),
    "time signature 255/4": (dict(meta=b"\xff\x58\x04\xff\x02\x18\x08"), "time signature 255/4"),
    "time signature 4/2^255": (dict(meta=b"\xff\x58\x04\x04\xff\x18\x08"), "time signature 4/a huge number"),
    "tempo 0": (dict(meta=b"\xff\x51\x03\x00\x00\x00"), "tempo of 0"),
    "a note 500,000 beats in": (dict(meta=b"\xff\x01\x00", delta=b"\xf2\xf2\x88\x00"), "more than 100000 beats"),
}


@pytest.mark.parametrize("mode", ["continue", "vary", "harmonize"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_file_we_cannot_use_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     case: str, mode: str) -> None:
    spec, words = CASES[case]
    source = smf(tmp_path / "in.mid", **spec)
    out = tmp_path / "out.mid"
    assert main(["generate", mode, str(source), "-o", str(out), "--model", "markov"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"companion: Input file error: {source}: ") and err.count("\n") == 1, err
    assert words in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mid"]


def test_the_plain_file_of_these_cases_is_read(tmp_path: Path) -> None:
    source = smf(tmp_path / "in.mid", meta=b"\xff\x58\x04\x03\x02\x18\x08")  # 3/4
    assert main(["generate", "continue", str(source), "-o", str(tmp_path / "out.mid"), "--model", "markov"]) == 0
