"""A take that cannot be saved (a full disk) leaves no half-written temporary file and is counted as failed:
the session's exit code says so (companion.live.session)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from companion.core.events import PPQ
from companion.files import writing
from companion.takes.keeper import TakeKeeper
from companion.takes.recording import TakeRecorder


def _finished_take(keeper: TakeKeeper) -> None:
    keeper.start(0, bpm=120.0)
    keeper.recorder.note("player", [0x90, 60, 90], 0)
    keeper.recorder.note("player", [0x80, 60, 0], PPQ)
    keeper.stop(4 * PPQ, {})


def test_a_full_disk_leaves_no_temporary_file_and_counts_a_failed_save(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync
    calls = []

    def disk_full_on_the_sidecar(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the MIDI file went through; the sidecar does not
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(writing.os, "fsync", disk_full_on_the_sidecar)
    logs: list[tuple[str, str]] = []
    keeper = TakeKeeper(TakeRecorder(tmp_path / "takes"), lambda level, text: logs.append((level, text)))
    _finished_take(keeper)
    keeper.write_pending()
    assert keeper.failed_saves == 1
    assert any(level == "error" and "No space left" in text for level, text in logs), logs
    assert not [p.name for p in (tmp_path / "takes").iterdir() if p.name.endswith(".tmp")]


def test_a_saved_take_is_no_failure(tmp_path: Path) -> None:
    keeper = TakeKeeper(TakeRecorder(tmp_path / "takes"), lambda level, text: None)
    _finished_take(keeper)
    keeper.write_pending()
    assert keeper.failed_saves == 0 and len(list((tmp_path / "takes").glob("take-*.json"))) == 1
