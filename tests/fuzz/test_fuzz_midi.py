"""Fuzzed MIDI files through `companion generate`: exit 0 or 2, never a traceback, nothing written but -o.

Derandomized with a fixed number of examples, so CI runs the same few seconds every time."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hostile import fuzz, midi_files
from hypothesis import given

from companion.cli import main


def _generate(data: bytes, mode: str, capsys: pytest.CaptureFixture[str], *extra: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source, out = Path(folder) / "in.mid", Path(folder) / "out.mid"
        source.write_bytes(data)
        code = main(["generate", mode, str(source), "-o", str(out), *extra])
        err = capsys.readouterr().err
        assert code in (0, 2) and "Traceback" not in err
        if code == 2:
            assert err.startswith("companion: ") and not out.exists(), err
        else:
            assert out.read_bytes()[:4] == b"MThd"
        assert {p.name for p in Path(folder).iterdir()} <= {"in.mid", "out.mid"}
        assert source.read_bytes() == data


@fuzz(80)
@given(data=midi_files())
def test_fuzzed_files_continue(data: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    _generate(data, "continue", capsys, "--model", "markov", "--bars", "1")


@fuzz(10)
@given(data=midi_files())
def test_fuzzed_files_vary(data: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    _generate(data, "vary", capsys)


@fuzz(5)
@given(data=midi_files())
def test_fuzzed_files_harmonize(data: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    _generate(data, "harmonize", capsys)
