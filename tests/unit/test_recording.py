"""Takes: type-1 MIDI with tempo/player/companion tracks that miditoolkit reads back, a sidecar, replay."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime
from pathlib import Path

import miditoolkit
import pytest

from companion.core.engine import EngineSettings
from companion.core.events import PPQ, Note, Phrase, RequestAnswer
from companion.errors import InputFileError
from companion.presets.preset import load_preset
from companion.takes.recording import SIDECAR_FORMAT, RecordingError, TakeRecorder
from companion.takes.replay import read_sidecar, replay_overrides

BAR = 4 * PPQ
STAMP = datetime(2026, 5, 9, 21, 30, 5)


class FakeClock:
    """Wall clock and monotonic ns that the test moves by hand."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def wall(self) -> datetime:
        return STAMP

    def monotonic_ns(self) -> int:
        return self.ns


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _recorder(tmp_path: Path, clock: FakeClock) -> TakeRecorder:
    return TakeRecorder(tmp_path / "takes", wall_clock=clock.wall, monotonic_ns=clock.monotonic_ns)


def _play_a_take(rec: TakeRecorder, checkpoint: Path | None = None) -> RequestAnswer:
    settings = dataclasses.asdict(EngineSettings(seed=41, temperature=0.8))
    preset = load_preset("folk-call-response")
    # The session is in bar 11 when recording starts: the take begins on that bar line.
    rec.start(10 * BAR + 100, bpm=100.0, settings=settings, extras=dict(preset.extras), preset=preset,
              model="markov", checkpoint=checkpoint)
    for pitch, start in ((60, 10 * BAR + 120), (64, 10 * BAR + PPQ), (67, 10 * BAR + 2 * PPQ)):
        rec.note("player", [0x90, pitch, 90], start)
        rec.note("player", [0x80, pitch, 0], start + PPQ // 2)
    rec.note("player", [0xB0, 64, 127], 10 * BAR + 5)  # not a note: ignored
    rec.tempo(11 * BAR, 100.004)  # a wobble, dropped
    rec.tempo(11 * BAR, 120.0)
    phrase = Phrase((Note(60, 90, 10 * BAR + 120, PPQ // 2),), 10 * BAR, 11 * BAR)
    request = RequestAnswer(phrase, 12 * BAR, 14 * BAR, "answer-1", 42, (0, "major"), {"temperature": 0.8})
    rec.answer(request, generation_ms=12.5)
    rec.note("companion", [0x91, 72, 80], 12 * BAR)
    rec.note("companion", [0x91, 74, 0], 12 * BAR + PPQ)  # a stray end (velocity-0 note-on): no note
    rec.note("companion", [0x81, 72, 0], 12 * BAR + PPQ)
    rec.note("companion", [0x91, 76, 70], 13 * BAR)  # still sounding when the take stops
    return request


def test_take_opens_in_miditoolkit_with_named_tracks_tempo_and_notes(tmp_path: Path, clock: FakeClock) -> None:
    rec = _recorder(tmp_path, clock)
    _play_a_take(rec)
    clock.ns += 9_500_000_000
    midi_path, json_path = rec.save(14 * BAR, timings={"lateness_p99_ns": 900_000})
    assert midi_path.name == "take-20260509-213005.mid" and json_path.name == "take-20260509-213005.json"
    midi = miditoolkit.MidiFile(str(midi_path))
    assert midi.ticks_per_beat == PPQ
    names = [i.name for i in midi.instruments]
    assert names == ["player", "companion"]
    player, companion = midi.instruments
    assert [(n.pitch, n.start, n.end) for n in player.notes] == [
        (60, 120, 120 + PPQ // 2), (64, PPQ, PPQ + PPQ // 2), (67, 2 * PPQ, 2 * PPQ + PPQ // 2)]
    assert [(n.pitch, n.start, n.end) for n in companion.notes] == [
        (72, 2 * BAR, 2 * BAR + PPQ), (76, 3 * BAR, 4 * BAR)]
    assert [(t.time, round(t.tempo, 2)) for t in midi.tempo_changes] == [(0, 100.0), (BAR, 120.0)]
    assert (midi.time_signature_changes[0].numerator, midi.time_signature_changes[0].denominator) == (4, 4)


def test_sidecar_holds_preset_settings_seeds_model_and_timings(tmp_path: Path, clock: FakeClock) -> None:
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    rec = _recorder(tmp_path, clock)
    _play_a_take(rec, checkpoint)
    clock.ns += 2_000_000_000
    _, json_path = rec.save(14 * BAR, timings={"lateness_p99_ns": 900_000})
    data = json.loads(json_path.read_text())
    assert data["format"] == SIDECAR_FORMAT and data["midi_file"].endswith(".mid")
    assert data["preset"]["id"] == "folk-call-response" and len(data["preset"]["sha256"]) == 64
    assert data["settings"]["seed"] == 41 and data["seed"] == 41 and data["extras"]["style"] == "folk"
    assert data["model"]["name"] == "markov" and data["model"]["checkpoint"] == str(checkpoint)
    assert data["model"]["checkpoint_sha256"] == hashlib.sha256(b"weights").hexdigest()
    (answer,) = data["answers"]
    assert answer["seed"] == 42 and answer["start_ticks"] == 2 * BAR and answer["generation_ms"] == 12.5
    assert answer["phrase"]["notes"] == [[60, 90, 120, PPQ // 2, 0]]
    assert data["origin_ticks"] == 10 * BAR and data["tempo"]["changes"] == [[BAR, 120.0]]
    assert data["duration_s"] == 2.0 and data["timings"] == {"lateness_p99_ns": 900_000}
    assert data["notes"] == {"player": 3, "companion": 2}
    assert not list(json_path.parent.glob(".*.tmp"))


def test_replay_reads_the_settings_back_and_rebuilds_each_request(tmp_path: Path, clock: FakeClock) -> None:
    rec = _recorder(tmp_path, clock)
    request = _play_a_take(rec)
    _, json_path = rec.save(14 * BAR)
    replay = read_sidecar(json_path)
    assert (replay.seed, replay.temperature, replay.model, replay.style) == (41, 0.8, "markov", "folk")
    assert replay.midi_file.is_file()
    (again,) = replay.requests()
    assert again.seed == request.seed and again.tag == request.tag and again.key == (0, "major")
    assert (again.start_ticks, again.end_ticks) == (2 * BAR, 4 * BAR)  # relative to the take's first bar
    assert again.phrase.notes == (Note(60, 90, 120, PPQ // 2),)
    overrides = replay_overrides(json_path)
    assert overrides["seed"] == 41 and overrides["model"] == "markov" and overrides["bars"] == 2
    assert overrides["settings"]["style"] == "folk" and overrides["settings"]["temperature"] == 0.8


def test_replay_warns_when_the_checkpoint_changed(tmp_path: Path, clock: FakeClock) -> None:
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    rec = _recorder(tmp_path, clock)
    _play_a_take(rec, checkpoint)
    _, json_path = rec.save(14 * BAR)
    assert read_sidecar(json_path).checkpoint_warning() is None
    checkpoint.write_bytes(b"other weights")
    assert "changed since the take" in read_sidecar(json_path).checkpoint_warning()
    checkpoint.unlink()
    assert "not there any more" in read_sidecar(json_path).checkpoint_warning()


def test_two_takes_in_one_second_do_not_overwrite_each_other(tmp_path: Path, clock: FakeClock) -> None:
    rec = _recorder(tmp_path, clock)
    _play_a_take(rec)
    first = rec.save(14 * BAR)
    _play_a_take(rec)
    second = rec.save(14 * BAR)
    assert first and second and first[0] != second[0] and second[0].name == "take-20260509-213005-2.mid"


def test_an_empty_take_writes_nothing(tmp_path: Path, clock: FakeClock) -> None:
    rec = _recorder(tmp_path, clock)
    assert rec.save(0) is None  # never started
    rec.start(0, bpm=120.0)
    assert rec.recording
    assert rec.save(BAR) is None and not rec.recording
    assert list((tmp_path / "takes").iterdir()) == []


def test_notes_after_stop_are_not_recorded(tmp_path: Path, clock: FakeClock) -> None:
    rec = _recorder(tmp_path, clock)
    rec.start(0, bpm=120.0)
    rec.note("player", [0x90, 60, 90], 0)
    take = rec.stop(BAR)
    rec.note("player", [0x90, 62, 90], BAR)
    assert take is not None and [n.pitch for n in take.notes["player"]] == [60]
    assert take.notes["player"][0].duration_ticks == BAR  # held to the end of the take


def test_unusable_take_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RecordingError, match="cannot create the take folder"):
        TakeRecorder(blocker / "takes")


@pytest.mark.parametrize(("content", "needle"), [
    (None, "no such sidecar"),
    ("{not json", "not a readable take sidecar"),
    ('{"format": "something-else"}', "not a Companion take sidecar"),
    ('{"format": "companion-take", "version": 99}', "newer Companion"),
])
def test_bad_sidecars_are_named(tmp_path: Path, content: str | None, needle: str) -> None:
    path = tmp_path / "take.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputFileError, match=needle):
        read_sidecar(path)


def test_a_take_slower_than_a_midi_file_holds_is_written_at_its_slowest_tempo(tmp_path: Path,
                                                                               clock: FakeClock) -> None:
    rec = _recorder(tmp_path, clock)
    rec.start(0, bpm=2.0)  # --bpm takes down to 1; a MIDI tempo event holds down to 3.58 BPM
    rec.note("player", [0x90, 60, 90], 0)
    rec.tempo(PPQ, 1.0)
    midi_path, _ = rec.save(BAR)
    assert [round(t.tempo, 2) for t in miditoolkit.MidiFile(str(midi_path)).tempo_changes] == [3.58]
