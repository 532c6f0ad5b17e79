"""read_midi's errors say what is wrong with the file (empty, cut off, not MIDI, a folder) and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from melody_file import write_melody

from companion.errors import InputFileError
from companion.files.midifile import read_midi


def _melody_bytes(path: Path) -> bytes:
    return write_melody(path, (60, 62, 64, 65)).read_bytes()


@pytest.mark.parametrize("content, problem", [
    (b"", "the file is empty (0 bytes)"),
    (b"hello, I am a text file", "not a Standard MIDI File"),
    (b"RIFF\x00\x00\x00\x10WAVEfmt ", "not a Standard MIDI File"),
    (b"MThd\x00\x00\x00\x06\x00\x01", "the file ends early (10 bytes"),
])
def test_an_unreadable_file_says_what_is_wrong_and_what_to_do(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as err:
        read_midi(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and problem in message
    assert "export it again as a Standard MIDI File" in message
    assert "()" not in message


def test_a_file_cut_off_inside_a_track_ends_early(tmp_path: Path) -> None:
    whole = _melody_bytes(tmp_path / "whole.mid")
    cut = tmp_path / "cut.mid"
    cut.write_bytes(whole[: len(whole) - 9])
    with pytest.raises(InputFileError, match="the file ends early"):
        read_midi(cut)


def test_a_folder_is_named_as_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "takes.mid"  # a folder, even with a .mid name
    folder.mkdir()
    with pytest.raises(InputFileError) as err:
        read_midi(folder)
    assert "is a folder, not a MIDI file; give the path of one .mid file" in str(err.value)
    assert "no such file" not in str(err.value)
    for name in ("b.mid", "a.MID", "notes.txt"):
        (folder / name).write_bytes(b"")
    with pytest.raises(InputFileError, match=r"\(it holds 2: a\.MID, b\.mid\)"):
        read_midi(folder)


def test_a_missing_file_is_no_such_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file; check the path"):
        read_midi(tmp_path / "missing.mid")
