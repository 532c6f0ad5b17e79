"""`companion demo`: the real engine over an in-process loopback, no MIDI hardware or server."""

from __future__ import annotations

import time
from pathlib import Path

import miditoolkit
import pytest

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


def test_the_harmonize_demo_reports_its_harmony_and_names_the_harmonizer(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.mid"
    assert main(["demo", "--mode", "harmonize", "-o", str(out), "--bpm", "240"]) == 0
    said = capsys.readouterr().out
    harmony = {inst.name: inst.notes for inst in miditoolkit.MidiFile(str(out)).instruments}["companion"]
    assert len(harmony) >= 11, "harmony under (nearly) every one of the 11 melody notes"
    assert f"answered {len(harmony)} notes" in said and "no answer came back" not in said
    assert "harmonizer" in said and "transformer" not in said


@pytest.mark.parametrize("output, says", [
    ("FOLDER", "is a folder; give the name of the file to write"),
    ("/proc/x.mid", "cannot write it in /proc"),
    ("MISSING/demo.mid", "does not exist; create it or choose another output"),
])
def test_an_output_that_cannot_be_written_is_refused_before_the_phrase_plays(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], output: str, says: str) -> None:
    (tmp_path / "FOLDER").mkdir()
    output = output.replace("FOLDER", str(tmp_path / "FOLDER")).replace("MISSING", str(tmp_path / "missing"))
    started = time.monotonic()
    assert main(["demo", "-o", output]) == 2
    assert time.monotonic() - started < 5.0, "refused before playing its ~14 s"
    out, err = capsys.readouterr()
    assert "playing" not in out
    assert err.startswith("companion: ") and says in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FOLDER"] and not list((tmp_path / "FOLDER").iterdir())


def test_an_unknown_mode_is_a_usage_error_listing_the_modes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--mode", "karaoke", "-o", str(tmp_path / "demo.mid")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --mode: invalid choice: 'karaoke'" in err and "call_response" in err and "harmonize" in err
    assert "Traceback" not in err and not list(tmp_path.iterdir())
