"""A take survives SIGKILL (issue 13, point 7): `companion run --headless --record DIR` over JACK journals what
is played; killed mid-take, the next start with the same folder recovers it as a normal take and says where."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import miditoolkit
import pytest

from companion.takes.journal import parse

pytestmark = pytest.mark.jack
PITCHES = [60, 62, 64, 65, 67]


def _session(tag: str, folder: Path) -> tuple[subprocess.Popen, list[str], str]:
    name_in = f"Companion In {tag}"
    process = subprocess.Popen(
        [sys.executable, "-m", "companion", "run", "--headless", "--backend", "jack", "--in-name", name_in,
         "--out-name", f"Companion Out {tag}", "--record", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return process, [], name_in


def _wait_for_line(process: subprocess.Popen, lines: list[str], needle: str, poll) -> bool:  # noqa: ANN001
    return bool(poll(lambda: process.poll() is not None or needle in (lines.append(process.stdout.readline())
                                                                      or "".join(lines)), timeout_s=60)) \
        and needle in "".join(lines)


def _journaled_pitches(folder: Path) -> list[int]:
    journals = list(folder.glob(".take-*.journal"))
    if len(journals) != 1:
        return []
    records = parse(journals[0].read_bytes()).records
    return [r[4] for r in records if r[0] == "n" and r[1] == "player" and r[3] & 0xF0 == 0x90 and r[5] > 0]


def test_a_take_killed_mid_way_is_recovered_by_the_next_start(tmp_path: Path, jack_client, poll) -> None:
    folder = tmp_path / "takes"
    tag = uuid.uuid4().hex[:8]
    process, lines, name_in = _session(tag, folder)
    try:
        assert _wait_for_line(process, lines, "running headless", poll), "".join(lines)
        player = jack_client(f"daw-{tag}").connect_out(name_in)
        for pitch in PITCHES:  # each note is in the journal (written and fsync'd) before the next is played
            for _ in range(3):  # the first cycles after connecting may drop a message: play it again then
                player.send([0x90, pitch, 90])
                if poll(lambda p=pitch: p in _journaled_pitches(folder), timeout_s=2.0):
                    break
            assert pitch in _journaled_pitches(folder), (pitch, _journaled_pitches(folder), "".join(lines))
            player.send([0x80, pitch, 0])
        process.kill()  # SIGKILL mid-take: nothing of ours runs any more
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert not list(folder.glob("take-*.mid")) and len(list(folder.glob(".take-*.journal"))) == 1

    again, lines, _ = _session(uuid.uuid4().hex[:8], folder)
    try:
        assert _wait_for_line(again, lines, "recovered a take", poll), "".join(lines)
    finally:
        again.send_signal(signal.SIGINT)
        rest, _ = again.communicate(timeout=30)
    log = "".join(lines) + rest
    assert again.returncode == 0, log
    (line,) = [line for line in log.splitlines() if "recovered a take" in line]
    midi_path = Path(re.search(r"(\S+\.mid)", line).group(1))
    assert midi_path.parent == folder and midi_path.is_file() and midi_path.with_suffix(".json").is_file()
    tracks = {track.name: track for track in miditoolkit.MidiFile(str(midi_path)).instruments}
    played = [n.pitch for n in tracks["player"].notes]
    assert list(dict.fromkeys(played)) == PITCHES, played  # in order (a note played again may repeat)
    assert not list(folder.glob(".take-*.journal")), "the recovered journal stays"
