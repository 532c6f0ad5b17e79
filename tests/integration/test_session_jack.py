"""`companion run` with its UI in a process of its own, over real JACK ports: killing the UI mid-answer leaves the
music going, and stopping the session still ends every note."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from midi_wire import left_sounding, note_ons, play_at

pytestmark = pytest.mark.jack

PHRASE = [(62, 0, 200), (66, 240, 200), (69, 480, 200), (71, 720, 200), (69, 960, 200), (66, 1200, 200)]


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError):
                continue
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmd:
            return cmd.read().replace(b"\0", b" ").decode()
    except OSError:  # it ended while we looked (a short-lived helper)
        return ""


def test_killing_the_ui_mid_answer_leaves_the_music_going(jack_client, poll, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    names = (f"Companion In {tag}", f"Companion Out {tag}")
    master, slave = pty.openpty()  # the UI needs a terminal: this one is the test's
    process = subprocess.Popen(
        [sys.executable, "-m", "companion", "run", "--backend", "jack", "--bpm", "150", "--seed", "2",
         "--in-name", names[0], "--out-name", names[1], "--control", str(tmp_path / "session.sock")],
        stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "TERM": "xterm-256color"}, start_new_session=True)
    os.close(slave)
    screen: list[bytes] = []
    threading.Thread(target=_drain, args=(master, screen), daemon=True).start()
    try:
        ui = poll(lambda: [c for c in _children(process.pid) if " attach " in _cmdline(c)], 60.0)
        assert ui, "companion run started no UI process"
        listed = lambda: subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10).stdout  # noqa: E731
        assert poll(lambda: all(name in listed() for name in names), 30.0), "the session's ports did not appear"
        client = jack_client("daw").connect_out(names[0]).connect_in(names[1])
        beat_ns = int(60e9 / 150)
        t0 = time.monotonic_ns() + beat_ns
        play_at(client.send, [(t0 + on * beat_ns // 480, [0x90, p, 90]) for p, on, _ in PHRASE]
                + [(t0 + (on + d) * beat_ns // 480, [0x80, p, 0]) for p, on, d in PHRASE])
        assert client.wait_for(lambda m: note_ons(m), timeout_s=20), "no answer began"
        killed_ns = time.monotonic_ns()
        os.kill(ui[0], signal.SIGKILL)  # the UI crashes mid-answer
        client.wait_for(lambda m: time.monotonic_ns() > killed_ns + 2_000_000_000, timeout_s=5)
        assert process.poll() is None, "the session stopped with its UI"
        after = [t for _, t in note_ons(client.messages()) if t > killed_ns + 50_000_000]
        heard = [(m, round((t - killed_ns) / 1e6, 1)) for m, t in client.messages()]
        assert after, f"the answer stopped when the UI died; heard (message, ms after the kill): {heard}"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert left_sounding(client.messages()) == 0, "a note was left sounding"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        os.close(master)


def _drain(fd: int, into: list[bytes]) -> None:
    """Read the UI's screen so it never blocks on a full terminal."""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        into.append(data)
