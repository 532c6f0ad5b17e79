"""The command line: exit codes and messages for bad input, and `generate continue`'s file contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mido
import pytest

from companion.cli import main


def _write_melody(path: Path, *, ppq: int = 96, bpm: float = 100.0, meter: tuple[int, int] = (3, 4),
                  file_type: int = 0) -> mido.MidiFile:
    midi = mido.MidiFile(type=file_type, ticks_per_beat=ppq)
    track = mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
        mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1], time=0),
    ])
    for pitch in [67, 69, 71, 72, 74, 72, 71, 69, 67, 66, 67, 62]:
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=ppq))
    midi.tracks.append(track)
    midi.save(path)
    return midi


def test_generate_continue_keeps_the_input_and_adds_a_companion_track(tmp_path: Path) -> None:
    source = tmp_path / "in.mid"
    _write_melody(source)
    original = mido.MidiFile(source)
    out = tmp_path / "out.mid"
    assert main(["generate", "continue", str(source), "-o", str(out), "--bars", "2", "--seed", "5",
                 "--model", "markov"]) == 0
    result = mido.MidiFile(out)
    assert result.type == 1 and result.ticks_per_beat == original.ticks_per_beat
    assert [m for m in result.tracks[0]] == [m for m in original.tracks[0]], "the input track must be unchanged"
    names = [next((m.name for m in t if m.type == "track_name"), None) for t in result.tracks]
    assert names[-1] == "companion" and names.count("companion") == 1
    input_end = 12 * 96
    now, starts, ends = 0, [], []
    for msg in result.tracks[-1]:
        now += msg.time
        if msg.type == "note_on" and msg.velocity:
            starts.append(now)
        elif msg.type in ("note_off", "note_on"):
            ends.append(now)
    assert starts and min(starts) >= input_end, "continue places its notes after the input's end"
    bar = 3 * 96
    assert max(ends) <= input_end + 2 * bar + 1, "no more than --bars bars"
    assert len(starts) == len(ends), "every generated note is closed"


def test_generate_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    source = tmp_path / "in.mid"
    _write_melody(source, file_type=1)
    outs = []
    for name in ("a.mid", "b.mid"):
        assert main(["generate", "continue", str(source), "-o", str(tmp_path / name), "--seed", "9",
                     "--model", "markov"]) == 0
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    (b"", "the file is empty"),
    (b"MThd\x00\x00\x00\x06garbage", "the file ends early"),
])
def test_bad_input_files_exit_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                content: bytes | None, expected: str) -> None:
    path = tmp_path / "bad.mid"
    if content is not None:
        path.write_bytes(content)
    assert main(["generate", "continue", str(path), "-o", str(tmp_path / "o.mid")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and expected in err and "Traceback" not in err


def test_a_file_without_notes_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.mid"
    midi = mido.MidiFile()
    midi.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)]))
    midi.save(path)
    assert main(["generate", "continue", str(path), "-o", str(tmp_path / "o.mid")]) == 2
    assert "holds no notes" in capsys.readouterr().err


def test_bad_flags_exit_2() -> None:
    for argv in (["run", "--bpm", "fast"], ["run", "--bpm", "9000"], ["generate", "sing", "x.mid", "-o", "y.mid"],
                 ["run", "--backend", "directx"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_unknown_named_port_exits_2_listing_what_exists(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--headless", "--backend", "jack", "--in-port", "No Such Synth 9000"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    # With a JACK server: the named port is missing and the message lists what exists;
    # without one: the message says no JACK server is running and what to do.
    assert "No Such Synth 9000" in err or "JACK" in err


def test_python_dash_m_companion_works() -> None:
    done = subprocess.run([sys.executable, "-m", "companion", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "generate" in done.stdout


@pytest.mark.parametrize("argv, says", [
    (["bench", "--seconds", "-1"], "--seconds must be between 0.5 and 3600 (how long each timing run lasts), got -1"),
    (["bench", "--seconds", "0"], "--seconds must be between 0.5 and 3600"),
    (["bench", "--seconds", "nan"], "--seconds must be between 0.5 and 3600"),
    (["bench", "latency", "warp", "--seconds", "1"], "unknown benchmark warp; choose from latency,"),
    (["bench", "--load", "-1"], "--load must be between 0 and 64 (CPU-bound processes started beside the loaded run)"),
])
def test_bench_arguments_are_checked_before_anything_runs(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], argv: list[str],
                                                          says: str) -> None:
    import companion.bench.suite

    ran: list[str] = []
    monkeypatch.setattr(companion.bench.suite, "_resolve", lambda target: lambda seconds: ran.append(target) or [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("companion: Usage error: ") and says in err and "Traceback" not in err
    assert not ran, "no benchmark runs (none opens a JACK client) with a bad argument"
