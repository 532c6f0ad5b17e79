"""`companion generate`'s output path: never one of its inputs, never a folder; refused before any work, exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from melody_file import write_melody

from companion.cli import main


def _melody(path: Path) -> Path:
    return write_melody(path)


@pytest.mark.parametrize("argv", [
    ["vary", "mel.mid", "-o", "mel.mid"],
    ["continue", "mel.mid", "-o", "./sub/../mel.mid", "--model", "markov"],
    ["interpolate", "other.mid", "mel.mid", "-o", "mel.mid"],
    ["continue", "mel.mid", "-o", "link.mid", "--model", "markov"],
])
def test_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str],
                                                                argv: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    before = _melody(tmp_path / "mel.mid").read_bytes()
    _melody(tmp_path / "other.mid")
    os.symlink("mel.mid", tmp_path / "link.mid")
    assert main(["generate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("companion: Usage error: -o ") and "is the input file mel.mid" in err
    assert "would overwrite your input" in err and "Traceback" not in err
    assert (tmp_path / "mel.mid").read_bytes() == before


def test_output_that_is_a_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _melody(tmp_path / "mel.mid")
    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["generate", "continue", str(source), "-o", str(folder), "--model", "markov"]) == 2
    err = capsys.readouterr().err
    assert f"-o {folder}: is a folder" in err and "Traceback" not in err
    assert sorted(tmp_path.iterdir()) == sorted([source, folder])  # no temporary file left behind
    assert not list(folder.iterdir())


def test_a_new_output_beside_the_input_is_written(tmp_path: Path) -> None:
    source = _melody(tmp_path / "mel.mid")
    assert main(["generate", "continue", str(source), "-o", str(tmp_path / "mel-2.mid"), "--model", "markov"]) == 0
    assert (tmp_path / "mel-2.mid").is_file()
