"""`companion generate drums`: a drum track under a melody, with the shipped drum GAN; bad input exits 2."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest
from melody_file import write_melody

from companion.cli import main
from companion.core.drums import PIECE_NOTES
from companion.worker.drum_voice import DrumAsk


def _drum_track(path: Path) -> mido.MidiTrack:
    mid = mido.MidiFile(path)
    assert [t.name for t in mid.tracks][-1] == "companion"
    return mid.tracks[-1]


def test_drums_under_a_melody_are_closed_on_channel_10_and_within_its_bars(tmp_path: Path) -> None:
    source = write_melody(tmp_path / "mel.mid", [60, 62, 64, 65] * 4)  # 4 bars of quarters at 96 ppq
    out = tmp_path / "out.mid"
    assert main(["generate", "drums", str(source), "-o", str(out), "--style", "funk", "--seed", "2"]) == 0
    track = _drum_track(out)
    sounding: dict[int, int] = {}
    now = 0
    ons = 0
    for msg in track:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            assert msg.channel == 9 and msg.note in PIECE_NOTES
            sounding[msg.note] = sounding.get(msg.note, 0) + 1
            ons += 1
        elif msg.type in ("note_off", "note_on"):
            sounding[msg.note] -= 1
    assert ons >= 16 and not any(sounding.values())  # a groove, every hit closed
    assert now <= 4 * 4 * 96 + 96  # within the melody's 4 bars (a 32nd of the last hit past its end at most)
    again = tmp_path / "again.mid"
    assert main(["generate", "drums", str(source), "-o", str(again), "--style", "funk", "--seed", "2"]) == 0
    assert again.read_bytes() == out.read_bytes()  # same seed, same drums


def test_an_unknown_style_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_melody(tmp_path / "mel.mid")
    assert main(["generate", "drums", str(source), "-o", str(tmp_path / "o.mid"), "--style", "polka"]) == 2
    err = capsys.readouterr().err
    assert "--style 'polka' is not a drum style" in err and "funk" in err and "Traceback" not in err


def test_a_meter_longer_than_the_model_bar_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mid = mido.MidiFile(type=0, ticks_per_beat=96)
    track = mido.MidiTrack([mido.MetaMessage("time_signature", numerator=5, denominator=4),
                            mido.Message("note_on", note=60, velocity=80, time=0),
                            mido.Message("note_off", note=60, velocity=0, time=96)])
    mid.tracks.append(track)
    mid.save(tmp_path / "five.mid")
    assert main(["generate", "drums", str(tmp_path / "five.mid"), "-o", str(tmp_path / "o.mid")]) == 2
    err = capsys.readouterr().err
    assert "five.mid: a bar of 5/4 does not fit" in err and "Traceback" not in err


class RecordingDrummer:
    """Stands in for the drum GAN: records whether each bar was asked to be a fill."""

    fills: list[bool] = []

    def __init__(self, checkpoint: object = None) -> None:
        RecordingDrummer.fills = []

    def bar(self, ask: DrumAsk, bar_start_ticks: int, bar_ticks: int, seed: int, temperature: float = 1.0,
            feel_seed: int | None = None) -> list:
        RecordingDrummer.fills.append(ask.fill)
        return []


def test_the_bar_before_the_melody_comes_back_after_a_pause_is_a_fill(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Bars 0-1 melody, 2-4 rests, 5-6 melody again: a break on bar 2 (the melody stopped), the section's fill on
    bar 4 (the last bar of the pause), the file's end on bar 6; the phrases count again from bar 5."""
    import companion.offline.drums as offline

    monkeypatch.setattr(offline, "DrumGenerator", RecordingDrummer)
    mid = mido.MidiFile(type=0, ticks_per_beat=96)
    track = mido.MidiTrack()
    rest = 0
    for bar in (0, 1, 5, 6):
        for beat in range(4):
            gap = rest if beat == 0 else 0
            track.append(mido.Message("note_on", note=60 + beat, velocity=80, time=gap))
            track.append(mido.Message("note_off", note=60 + beat, velocity=0, time=96))
        rest = 3 * 4 * 96 if bar == 1 else 0
    mid.tracks.append(track)
    mid.save(tmp_path / "pause.mid")
    assert main(["generate", "drums", str(tmp_path / "pause.mid"), "-o", str(tmp_path / "o.mid"), "--seed", "1"]) == 0
    fills = RecordingDrummer.fills
    assert len(fills) == 7
    assert fills[2] and fills[4] and fills[6]  # the break, the section's last bar, the end
    assert not fills[0] and not fills[1] and not fills[5]  # bar 3 is a phrase end (4 bars from 0): a chance
