"""Small command-line things a newcomer meets in the first hour (issue 15, point 14), run as the user runs them."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from companion.cli import main
from companion.midi.backends import _WHY_NO_ALSA_SEQ, _WHY_NO_JACK
from companion.presets.preset import ENV_CONFIG_DIR


def companion(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "companion", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_no_jack_server_is_our_one_line_without_libjacks_noise() -> None:
    done = companion("run", "--headless", "--backend", "jack",
                     env={"JACK_DEFAULT_SERVER": f"none-{uuid.uuid4().hex[:8]}", "JACK_NO_START_SERVER": "1"})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"companion: MIDI port error: MIDI backend jack is not usable: {_WHY_NO_JACK}"]
    # Each hint says how to make its own backend work, not "use the other one" (which goes round in a circle).
    assert "--backend" not in _WHY_NO_JACK and "--backend" not in _WHY_NO_ALSA_SEQ


def _melody(path: Path) -> Path:
    import mido

    midi = mido.MidiFile(type=0, ticks_per_beat=96)
    track = mido.MidiTrack()
    for pitch in (60, 62, 64, 65, 67, 65, 64, 62):
        track += [mido.Message("note_on", note=pitch, velocity=80, time=0),
                  mido.Message("note_off", note=pitch, velocity=0, time=96)]
    midi.tracks.append(track)
    midi.save(path)
    return path


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_usage_mistakes_are_one_line_that_says_what_to_do(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    scale = _melody(tmp_path / "scale.mid")
    assert main(["presets", "--check"]) == 2
    assert "give the preset files (or names) to check" in _one_line(capsys.readouterr().err)
    assert main(["generate", "continue", str(scale), "-o", str(tmp_path / "out.txt"), "--model", "markov"]) == 2
    assert "give a name ending in .mid" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "out.txt").exists()
    assert main(["generate", "generate", "-o", str(tmp_path / "g.mid"), "--style", "jazz"]) == 2
    line = _one_line(capsys.readouterr().err)  # a usage error, not an "Input file error"
    assert line.startswith("companion: Usage error: --style jazz:") and "folk" in line and "drums" in line
    assert main(["generate", "continue", str(scale), "-o", str(tmp_path / "o.mid"),
                 "--checkpoint", str(scale)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "is a MIDI file, not a checkpoint" in line and "weights_only" not in line and len(line) < 300


def test_preset_problems_point_to_the_table_and_are_listed_whole(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "config" / "presets"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text('mode = "duet"\n[engine]\nresponse_bars = 99\n', encoding="utf-8")
    assert main(["presets", "--check", str(folder / "mine.toml")]) == 2
    err = capsys.readouterr().err
    assert 'unknown key "mode" in the top level; it belongs in [engine]' in err and '"model"' not in err.split(
        "allowed")[0]
    os.environ[ENV_CONFIG_DIR] = str(tmp_path / "config")
    try:
        assert main(["presets"]) == 0
    finally:
        del os.environ[ENV_CONFIG_DIR]
    listing = capsys.readouterr().out
    assert "INVALID" in listing and "belongs in [engine]" in listing and "response_bars = 99" in listing


def test_top_level_help_shows_the_run_options_and_steps_says_what_it_counts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert "--headless" in shown and "--preset NAME|PATH" in shown and "--bpm" in shown
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert "both included (4: the two inputs and 2 steps between them)" in " ".join(capsys.readouterr().out.split())
    a, b = _melody(tmp_path / "a.mid"), _melody(tmp_path / "b.mid")
    with caplog.at_level(logging.INFO, logger="companion"):
        assert main(["generate", "interpolate", str(a), str(b), "-o", str(tmp_path / "i.mid"), "--steps", "4"]) == 0
    said = " ".join(record.getMessage() for record in caplog.records)
    assert "2 step(s) between (--steps 4 counts both inputs)" in said, said
