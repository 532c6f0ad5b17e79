"""Offline harmonize does work in proportion to the melody, says how far it got, and refuses (exit 2, before
any model work) a melody too long to harmonize in one go."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from harmony_fakes import FakeHarmonizer, chorale

from companion.cli import main
from companion.core.engine import Engine
from companion.core.events import PPQ, Note
from companion.files.midifile import read_midi, write_take
from companion.offline.harmonize import harmonize_file

HOUR_AT_120_BPM_TICKS = 120 * 60 * PPQ


class CountedTicks:
    """Counts the engine's ticks; fails the test at once past `limit` (today's loop ticked the whole file)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
        self.calls, self.limit = 0, limit
        real = Engine.tick

        def tick(engine: Engine, now_ticks: int) -> list:
            self.calls += 1
            assert self.calls <= limit, f"more than {limit} engine ticks for a melody of a few notes"
            return real(engine, now_ticks)

        monkeypatch.setattr(Engine, "tick", tick)


def _file(tmp_path: Path, notes: list[Note]) -> Path:
    return write_take(tmp_path / "melody.mid", [("melody", notes)], 120.0)


def test_a_long_silence_costs_no_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notes = [Note(72, 90, 0, PPQ, 0), Note(74, 90, PPQ, PPQ, 0),
             Note(76, 90, 20 * HOUR_AT_120_BPM_TICKS // 2, PPQ, 0)]  # ten hours later
    source = read_midi(_file(tmp_path, notes))
    counted = CountedTicks(monkeypatch, limit=2_000)
    harmony = harmonize_file(source, seed=0, settings={}, loader=lambda: [FakeHarmonizer(chorale)])
    assert counted.calls < 2_000
    assert {n.start_ticks for n in harmony} >= {0, notes[2].start_ticks}  # both phrases harmonized


def test_a_one_hour_note_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = _file(tmp_path, [Note(60, 90, 0, HOUR_AT_120_BPM_TICKS, 0)])
    CountedTicks(monkeypatch, limit=0)
    assert main(["generate", "harmonize", str(path), "-o", str(tmp_path / "out.mid")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "its melody lasts 28,800 16th notes" in err and "cut the file" in err
    assert not (tmp_path / "out.mid").exists()


def test_too_many_notes_are_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """20,000 16th notes (the issue's 100,000 take mido a minute to read on a busy CI machine)."""
    path = _file(tmp_path, [Note(60 + i % 12, 90, i * PPQ // 4, PPQ // 4, 0) for i in range(20_000)])
    CountedTicks(monkeypatch, limit=0)
    assert main(["generate", "harmonize", str(path), "-o", str(tmp_path / "out.mid")]) == 2
    assert "its melody lasts 20,000 16th notes" in capsys.readouterr().err


def test_a_long_melody_says_how_far_it_got(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notes = [Note(60 + i % 12, 90, i * PPQ, PPQ, 0) for i in range(300)]  # 1,200 16ths
    source = read_midi(_file(tmp_path, notes))
    with caplog.at_level(logging.INFO, logger="companion"):
        harmonize_file(source, seed=0, settings={}, loader=lambda: [FakeHarmonizer(chorale)])
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("harmonize: ")]
    assert progress[0] == "harmonize: 10% done (bar 8 of 75)" and progress[-1].startswith("harmonize: 90% done")
    assert len(progress) == 9
