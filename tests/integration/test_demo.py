"""`companion demo`: the real engine over an in-process loopback, no MIDI hardware or server."""

from __future__ import annotations

from pathlib import Path

import miditoolkit

from companion.cli import main


def test_demo_answers_on_the_bar_and_writes_both_parts(tmp_path: Path) -> None:
    out = tmp_path / "demo.mid"
    assert main(["demo", "-o", str(out), "--bpm", "240", "--seed", "4"]) == 0
    midi = miditoolkit.MidiFile(str(out))
    tracks = {inst.name: inst.notes for inst in midi.instruments}
    assert set(tracks) == {"player", "companion"}
    assert len(tracks["player"]) == 11 and tracks["companion"], "the answer came back"
    bar = 4 * midi.ticks_per_beat
    first = min(n.start for n in tracks["companion"])
    assert first > max(n.end for n in tracks["player"]), "the answer follows the phrase"
    assert abs(first - round(first / bar) * bar) <= 10, "the answer starts on a bar line (within 5 ms)"
    assert abs(midi.tempo_changes[0].tempo - 240) < 0.01
