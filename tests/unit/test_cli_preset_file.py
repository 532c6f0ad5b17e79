"""`--preset FILE` given by a bare name: an existing file is read as a preset file, and a bad one is named as such."""

from __future__ import annotations

from pathlib import Path

import pytest
from melody_file import write_melody

from companion.cli import main


def _melody(path: Path) -> Path:
    return write_melody(path, (60, 62, 64, 65))


@pytest.mark.parametrize("preset, says", [
    ("take.mid", "take.mid: not a preset file: it is not text (is it a MIDI file?)"),  # a real MIDI file
    ("notes.txt", "not valid TOML"),
])
def test_an_existing_file_that_is_not_a_preset_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str], preset: str,
                                                                 says: str) -> None:
    monkeypatch.chdir(tmp_path)
    _melody(tmp_path / "in.mid")
    _melody(tmp_path / "take.mid")
    (tmp_path / "notes.txt").write_text("hello, not a preset\n")
    assert main(["generate", "continue", "in.mid", "-o", "out.mid", "--model", "markov", "--preset", preset]) == 2
    err = capsys.readouterr().err
    assert err.startswith("companion: Preset error: ") and says in err
    assert "no preset named" not in err and "Traceback" not in err


def test_an_existing_preset_file_by_a_bare_name_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _melody(tmp_path / "in.mid")
    (tmp_path / "mine").write_text('name = "Mine"\ndescription = "a preset without the .toml suffix"\n')
    assert main(["generate", "continue", "in.mid", "-o", "out.mid", "--model", "markov", "--preset", "mine"]) == 0


def test_an_unknown_name_still_lists_the_presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    _melody(tmp_path / "in.mid")
    assert main(["generate", "continue", "in.mid", "-o", "out.mid", "--preset", "no-such-preset"]) == 2
    assert 'no preset named "no-such-preset"' in capsys.readouterr().err
