"""Ctrl-C (a real SIGINT) stops `train`, `demo` and `generate` at once with a message and exit code 130;
training keeps a checkpoint that --resume continues from (issue 15, point 2)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mido


def _folder_of_tunes(folder: Path, count: int) -> Path:
    folder.mkdir()
    for k in range(count):
        rng = random.Random(k)
        midi = mido.MidiFile(type=0, ticks_per_beat=96)
        track = mido.MidiTrack()
        for _ in range(48):
            pitch = 60 + rng.choice((0, 2, 4, 5, 7, 9, 11, 12))
            track += [mido.Message("note_on", note=pitch, velocity=80, time=0),
                      mido.Message("note_off", note=pitch, velocity=0, time=48)]
        midi.tracks.append(track)
        midi.save(folder / f"tune{k:03d}.mid")
    return folder


def _interrupt(args: list[str], when: Callable[[str], bool] | None = None, after_s: float = 0.0,
               timeout_s: float = 120.0) -> tuple[int, str]:
    """Run `companion ARGS`, send SIGINT once its output satisfies `when` (else `after_s` seconds after its
    start); (exit code, all its output)."""
    process = subprocess.Popen([sys.executable, "-m", "companion", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = ""
    deadline = time.monotonic() + timeout_s
    while when is not None and not when(seen) and process.poll() is None and time.monotonic() < deadline:
        seen += process.stdout.readline()
    time.sleep(after_s)
    assert process.poll() is None, f"it ended before the Ctrl-C:\n{seen}"
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)  # "at once": not after the parsing or the training
    return process.returncode, seen + rest


def test_ctrl_c_while_parsing_stops_the_workers_without_tracebacks(tmp_path: Path) -> None:
    data = _folder_of_tunes(tmp_path / "tunes", 400)
    code, output = _interrupt(["train", "transformer", "--data", str(data), "--cache-dir", str(tmp_path / "cache"),
                               "--workers", "2", "--run-dir", str(tmp_path / "run")],
                              lambda seen: "reading 400 files" in seen)
    assert code == 130, output
    assert "stopped by Ctrl-C" in output and "Traceback" not in output, output
    assert not (tmp_path / "run" / "last.pt").exists()


def test_ctrl_c_while_training_saves_a_checkpoint_that_resumes(tmp_path: Path) -> None:
    data = _folder_of_tunes(tmp_path / "tunes", 4)
    args = ["train", "transformer", "--data", str(data), "--cache-dir", str(tmp_path / "cache"), "--workers", "1",
            "--run-dir", str(tmp_path / "run"), "--init-from", "none", "--n-layer", "1", "--n-head", "2",
            "--n-embd", "32", "--block-size", "64", "--batch-size", "2", "--max-steps", "100000"]
    code, output = _interrupt(args, lambda seen: "] step 1/100000" in seen)
    assert code == 130, output
    assert "--resume" in output and "Traceback" not in output, output
    assert (tmp_path / "run" / "last.pt").is_file()
    code, output = _interrupt([*args, "--resume"], lambda seen: "resumed from" in seen)
    assert code == 130 and "resumed from" in output, output


def test_ctrl_c_stops_demo_and_generate_with_130(tmp_path: Path) -> None:
    code, output = _interrupt(["demo", "-o", str(tmp_path / "demo.mid")], lambda seen: "playing a 2-bar" in seen)
    assert code == 130 and "companion demo: stopped by Ctrl-C" in output and "Traceback" not in output, output
    assert not (tmp_path / "demo.mid").exists()
    # A long piece from the Transformer (a minute or more on a CPU), stopped after a few seconds.
    code, output = _interrupt(["generate", "generate", "-o", str(tmp_path / "long.mid"), "--bars", "256",
                               "--model", "transformer"], after_s=5.0)
    assert code == 130 and "companion generate: stopped by Ctrl-C" in output and "Traceback" not in output, output
    assert not (tmp_path / "long.mid").exists()
