"""Bad options and unwritable outputs of the offline commands: one clear line, exit 2, nothing left behind."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import mido
import pytest
from melody_file import write_melody

from companion.cli import main
from companion.errors import OutputFileError
from companion.files.midifile import save_atomically


def _melody(path: Path) -> Path:
    return write_melody(path)


def _one_line_error(err: str, title: str) -> None:
    assert err.startswith(f"companion: {title}: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


# --- outputs that cannot be written ------------------------------------------------------------------------


def test_a_failed_write_removes_its_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.mid"
    target.mkdir()  # the temporary file is written, the rename onto a folder fails
    with pytest.raises(OutputFileError, match="out.mid: is a folder"):
        save_atomically(mido.MidiFile(), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mid"]


def test_a_write_failing_half_way_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(self: mido.MidiFile, filename: str | None = None, file: BinaryIO | None = None) -> None:
        if file is not None:
            file.write(b"MThd half")
        else:
            Path(filename).write_bytes(b"MThd half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mido.MidiFile, "save", disk_full)
    with pytest.raises(OutputFileError, match=r"out.mid: cannot write it in .* \(No space left on device\)"):
        save_atomically(mido.MidiFile(), tmp_path / "out.mid")
    assert not list(tmp_path.iterdir())


def test_an_output_in_a_missing_folder_is_an_output_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _melody(tmp_path / "in.mid")
    out = tmp_path / "nowhere" / "out.mid"
    assert main(["generate", "continue", str(source), "-o", str(out), "--model", "markov"]) == 2
    err = capsys.readouterr().err
    _one_line_error(err, "Output file error")
    assert f"the folder {out.parent} does not exist" in err


def test_an_output_that_cannot_be_written_exits_2_without_a_traceback(tmp_path: Path) -> None:
    source = _melody(tmp_path / "in.mid")
    done = subprocess.run([sys.executable, "-m", "companion", "generate", "continue", str(source),
                           "-o", "/proc/x.mid", "--model", "markov"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    _one_line_error(done.stderr, "Output file error")
    assert "/proc/x.mid: cannot write it in /proc" in done.stderr and "choose a folder you can write to" in done.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_exits_2_and_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _melody(tmp_path / "in.mid")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert main(["generate", "continue", str(source), "-o", str(folder / "out.mid"), "--model", "markov"]) == 2
        _one_line_error(capsys.readouterr().err, "Output file error")
        assert not list(folder.iterdir())
    finally:
        folder.chmod(0o755)


# --- numeric options: a usage error naming the flag and its range --------------------------------------------


@pytest.mark.parametrize("mode, bars", [("continue", "0"), ("continue", "100000"), ("generate", "257"),
                                        ("vary", "-2")])
def test_bars_out_of_range_is_a_usage_error_naming_the_range(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             mode: str, bars: str) -> None:
    inputs = [] if mode == "generate" else [str(_melody(tmp_path / "in.mid"))]
    assert main(["generate", mode, *inputs, "-o", str(tmp_path / "out.mid"), "--bars", bars,
                 "--model", "markov"]) == 2
    err = capsys.readouterr().err
    _one_line_error(err, "Usage error")
    assert f"--bars must be between 1 and 256 (the length of the generated part), got {bars}" in err
    assert not (tmp_path / "out.mid").exists()


def test_the_longest_piece_is_still_made(tmp_path: Path) -> None:
    out = tmp_path / "out.mid"
    assert main(["generate", "generate", "-o", str(out), "--bars", "256", "--model", "markov"]) == 0
    assert out.is_file()


# --- checkpoints -------------------------------------------------------------------------------------------


def test_a_checkpoint_folder_is_called_a_folder_and_its_pt_files_named(tmp_path: Path) -> None:
    from models.checkpoint import CheckpointFileError, load_checkpoint

    (tmp_path / "continuation.pt").write_bytes(b"")
    (tmp_path / "notes.md").write_text("not a checkpoint")
    with pytest.raises(CheckpointFileError) as err:
        load_checkpoint(tmp_path, kind="continuation")
    message = str(err.value)
    assert f"checkpoint {tmp_path} is a folder, not a checkpoint: give the path of the .pt file" in message
    assert "(it holds continuation.pt)" in message and "does not exist" not in message


# --- a preset's [model] table in the offline commands -------------------------------------------------------


def _preset(path: Path, table: str) -> Path:
    path.write_text(f'name = "{path.stem}"\ndescription = "offline model test"\n\n[model]\n{table}\n')
    return path


def _continue(tmp_path: Path, name: str, *flags: str) -> tuple[int, bytes]:
    out = tmp_path / f"{name}.mid"
    code = main(["generate", "continue", str(tmp_path / "in.mid"), "-o", str(out), "--bars", "2", "--seed", "3",
                 *flags])
    return code, out.read_bytes() if out.exists() else b""


def test_the_preset_model_is_played_unless_the_flag_says_otherwise(tmp_path: Path) -> None:
    _melody(tmp_path / "in.mid")
    markov = _preset(tmp_path / "m.toml", 'generator = "markov"')
    transformer = _preset(tmp_path / "t.toml", 'generator = "transformer"')
    code, by_preset = _continue(tmp_path, "by-preset", "--preset", str(markov))
    assert code == 0
    code, by_flag = _continue(tmp_path, "by-flag", "--preset", str(transformer), "--model", "markov")
    assert code == 0
    assert by_preset == by_flag, "a preset saying markov answers as --model markov does"
    code, shipped = _continue(tmp_path, "shipped", "--preset", str(transformer))
    assert code == 0 and shipped != by_preset, "a preset saying transformer plays the Transformer"


def test_a_preset_with_a_corrupt_checkpoint_is_a_checkpoint_error(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _melody(tmp_path / "in.mid")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint at all")
    preset = _preset(tmp_path / "p.toml", 'checkpoint = "broken.pt"')  # relative to the preset file
    code, _ = _continue(tmp_path, "out", "--preset", str(preset))
    err = capsys.readouterr().err
    assert code == 2
    _one_line_error(err, "Checkpoint error")
    assert f"checkpoint {tmp_path / 'broken.pt'} is not a checkpoint" in err
    assert not (tmp_path / "out.mid").exists()
    # the command line wins: the shipped checkpoint by name, or Markov that needs none
    from models.continuation.model import DEFAULT_CHECKPOINT

    assert _continue(tmp_path, "flag", "--preset", str(preset), "--checkpoint", str(DEFAULT_CHECKPOINT))[0] == 0
    assert _continue(tmp_path, "markov", "--preset", str(preset), "--model", "markov")[0] == 0


def test_a_checkpoint_flag_naming_a_folder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _melody(tmp_path / "in.mid")
    (tmp_path / "ckpt").mkdir()
    code, _ = _continue(tmp_path, "out", "--checkpoint", str(tmp_path / "ckpt"))
    err = capsys.readouterr().err
    assert code == 2
    _one_line_error(err, "Checkpoint error")
    assert f"checkpoint {tmp_path / 'ckpt'} is a folder, not a checkpoint: give the path of the .pt file" in err
