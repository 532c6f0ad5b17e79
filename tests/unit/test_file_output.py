"""Output files: only regular files are written (a link's target, never the link), whole or not at all."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from melody_file import write_melody

from companion.cli import main
from companion.errors import OutputFileError
from companion.files.writing import regular_target, write_atomically


def test_a_symlink_given_as_output_writes_its_target_and_stays_a_link(tmp_path: Path) -> None:
    source = write_melody(tmp_path / "mel.mid")
    os.symlink("target.mid", tmp_path / "link.mid")
    assert main(["generate", "continue", str(source), "-o", str(tmp_path / "link.mid"), "--model", "markov"]) == 0
    assert (tmp_path / "link.mid").is_symlink()
    assert (tmp_path / "target.mid").read_bytes()[:4] == b"MThd"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.mid", "mel.mid", "target.mid"]


def test_a_fifo_given_as_output_is_refused_and_stays_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_melody(tmp_path / "mel.mid")
    fifo = tmp_path / "out.mid"
    os.mkfifo(fifo)
    assert main(["generate", "continue", str(source), "-o", str(fifo), "--model", "markov"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a FIFO" in err and "regular files" in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mel.mid", "out.mid"]


def test_a_link_to_a_fifo_is_refused_too(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    os.symlink("pipe", tmp_path / "out.mid")
    with pytest.raises(OutputFileError, match="the link .* points to"):
        write_atomically(tmp_path / "out.mid", lambda handle: handle.write(b"x"))
    assert stat.S_ISFIFO(os.stat(tmp_path / "out.mid").st_mode) and (tmp_path / "out.mid").is_symlink()


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_device_files_are_never_targets(device: str) -> None:
    before = os.stat(device)
    with pytest.raises(OutputFileError, match="character device"):
        write_atomically(device, lambda handle: handle.write(b"MThd"))
    after = os.stat(device)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary_one(tmp_path: Path) -> None:
    def disk_full(handle: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputFileError, match="No space left"):
        write_atomically(tmp_path / "take.json", disk_full)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_whole_and_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out.mid"
    target.write_bytes(b"old")
    target.chmod(0o600)
    assert write_atomically(target, lambda handle: handle.write(b"new")) == target
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert regular_target(tmp_path / "new.mid") == tmp_path / "new.mid"
