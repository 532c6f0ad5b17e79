"""Take journals (issue 13, point 7): a running take is appended to a journal that survives being cut anywhere;
the next session turns a dead session's journal into a normal take, and a saved take's journal goes."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import zlib
from datetime import datetime
from pathlib import Path

import miditoolkit
import pytest

from companion.core.engine import EngineSettings
from companion.core.events import PPQ, Note, Phrase, RequestAnswer
from companion.files import writing
from companion.takes.journal import JournalFile, encode, header_record, parse, recover_journals
from companion.takes.keeper import TakeKeeper
from companion.takes.recording import TakeRecorder, build_take

BAR = 4 * PPQ


def _play(rec: TakeRecorder) -> None:
    """A take with every kind of record: notes of both parts, tempo, an answer, a cut, a settings change."""
    rec.start(10 * BAR + 100, bpm=100.0, settings=dataclasses.asdict(EngineSettings(seed=41)), model="markov")
    for i, pitch in enumerate((60, 64, 67, 72)):
        rec.note("player", [0x90, pitch, 90], 10 * BAR + i * PPQ)
        rec.note("player", [0x80, pitch, 0], 10 * BAR + i * PPQ + PPQ // 2)
    rec.tempo(11 * BAR, 120.0)
    phrase = Phrase((Note(60, 90, 10 * BAR, PPQ // 2),), 10 * BAR, 11 * BAR)
    rec.answer(RequestAnswer(phrase, 12 * BAR, 14 * BAR, "answer-1", 42, (0, "major"), {"temperature": 0.8}))
    rec.note("companion", [0x91, 72, 80], 12 * BAR)
    rec.note("companion", [0x81, 72, 0], 12 * BAR + PPQ)
    rec.cut("answer-1", 13 * BAR, "stop")
    rec.settings_changed(13 * BAR, {"mode": "duet"})
    rec.note("companion", [0x91, 76, 70], 13 * BAR)  # still sounding


def _journal_bytes(rec: TakeRecorder) -> tuple[bytes, dict, list]:
    serial, header, records = rec.journal_delta()
    data = encode(header_record(header)) + b"".join(encode(r) for r in records)
    return data, header, records


def _content(take) -> tuple:  # noqa: ANN001
    """What a take's files hold, in comparable form."""
    if take is None:
        return None
    notes = {part: [(n.pitch, n.velocity, n.start_ticks, n.duration_ticks, n.channel) for n in notes]
             for part, notes in take.notes.items()}
    sidecar = {k: v for k, v in take.sidecar.items() if k not in ("duration_s", "timings", "end_ticks")}
    return notes, take.bpm, take.tempo_changes, json.dumps(sidecar, sort_keys=True)


def test_a_whole_journal_rebuilds_the_take_exactly(tmp_path: Path) -> None:
    rec = TakeRecorder(tmp_path)
    _play(rec)
    data, _, _ = _journal_bytes(rec)
    stopped = rec.stop(0)
    journal = parse(data)
    assert journal.bad_lines == 0 and journal.header is not None
    assert _content(journal.take()) == _content(stopped)
    assert journal.take().sidecar["answers"][0]["cut"] == [["stop", 3 * BAR]]


def test_a_journal_cut_at_every_byte_recovers_the_whole_lines_before_the_cut(tmp_path: Path) -> None:
    rec = TakeRecorder(tmp_path)
    _play(rec)
    data, header, records = _journal_bytes(rec)
    ends = [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]  # where each line ends
    header_end = ends[0]
    for cut in range(len(data) + 1):
        journal = parse(data[:cut])
        whole = sum(1 for end in ends if end <= cut)
        if cut < header_end:
            assert journal.header is None and journal.records == () and journal.take() is None, cut
            continue
        kept = records[:whole - 1]
        assert journal.records == tuple(kept), cut
        assert journal.bad_lines == (0 if cut in ends or cut == header_end else 1), cut
        assert _content(journal.take()) == _content(build_take(header, kept, 0)), cut


def test_a_damaged_byte_anywhere_loses_at_most_its_line_and_never_raises(tmp_path: Path) -> None:
    rec = TakeRecorder(tmp_path)
    _play(rec)
    data, _, records = _journal_bytes(rec)
    for offset in range(len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= 0x21
        journal = parse(bytes(damaged))
        assert len(journal.records) >= len(records) - 2, offset  # a newline damaged: two lines become one
        journal.take()


@pytest.mark.parametrize("junk", [b"", b"\n\n\n", b"\x00" * 100, b"garbage\n" * 10, b"00000000 []\n",
                                  encode(["n", "player", -1, 0x90, 60, 90]), encode(["n", "drums", 0, 0x90, 60, 90]),
                                  encode(["t", 0, 0.0]), encode(["h", {"format": "companion-take-journal"}]),
                                  b"%08x %s\n" % (zlib.crc32(b"[" * 100_000), b"[" * 100_000)])
def test_junk_journals_hold_nothing_and_never_raise(junk: bytes) -> None:
    journal = parse(junk)
    assert journal.records == () and journal.take() is None


def test_a_lost_header_still_recovers_the_notes_on_their_bar(tmp_path: Path) -> None:
    rec = TakeRecorder(tmp_path)
    _play(rec)
    data, _, _ = _journal_bytes(rec)
    journal = parse(data[data.index(b"\n") + 1:])
    take = journal.take()
    assert journal.header is None and [n.pitch for n in take.notes["player"]] == [60, 64, 67, 72]
    assert take.notes["player"][0].start_ticks == 0 and take.bpm == 100.0


def _keeper(folder: Path) -> tuple[TakeKeeper, list[tuple[str, str]]]:
    logs: list[tuple[str, str]] = []
    return TakeKeeper(TakeRecorder(folder, create=False), lambda level, text: logs.append((level, text))), logs


def _journals(folder: Path) -> list[Path]:
    return sorted(folder.glob(".take-*.journal"))


def test_a_running_take_is_journaled_and_a_dead_sessions_journal_becomes_a_take(tmp_path: Path) -> None:
    folder = tmp_path / "takes"
    first, _ = _keeper(folder)
    first.start(0, bpm=120.0)
    first.recorder.note("player", [0x90, 60, 90], 10)
    first.write_pending()  # the supervisor's round: the folder is made, the journal written
    first.recorder.note("player", [0x80, 60, 0], PPQ)
    first.recorder.note("player", [0x90, 62, 90], PPQ)
    first.write_pending()
    (journal,) = _journals(folder)
    assert len(parse(journal.read_bytes()).records) == 4  # the start tempo and three notes
    second, logs = _keeper(folder)
    assert second.recover() == [] and _journals(folder) == [journal]  # its session still writes it: left alone
    for open_journal in first._journals.values():
        open_journal.close()  # the first session dies (its lock goes with its files)
    (midi_path,) = second.recover()
    assert _journals(folder) == [] and midi_path.parent == folder
    assert any(level == "warning" and str(midi_path) in text and "recovered" in text for level, text in logs), logs
    midi = miditoolkit.MidiFile(str(midi_path))
    assert [(n.pitch, n.start) for n in midi.instruments[0].notes] == [(60, 10), (62, PPQ)]
    sidecar = json.loads(midi_path.with_suffix(".json").read_text())
    assert sidecar["recovered"]["journal"] == journal.name and sidecar["notes"]["player"] == 2


def test_a_saved_take_removes_its_journal_and_an_empty_one_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "takes"
    keeper, _ = _keeper(folder)
    keeper.start(0, bpm=120.0)
    keeper.recorder.note("player", [0x90, 60, 90], 0)
    keeper.write_pending()
    assert len(_journals(folder)) == 1
    keeper.stop(BAR, {})
    keeper.write_pending()
    assert _journals(folder) == [] and len(list(folder.glob("take-*.mid"))) == 1
    keeper.start(BAR, bpm=120.0)
    keeper.write_pending()
    assert len(_journals(folder)) == 1
    keeper.stop(2 * BAR, {})
    keeper.write_pending()
    assert _journals(folder) == [] and len(list(folder.glob("take-*.mid"))) == 1


def test_a_take_that_cannot_be_saved_stays_whole_in_its_journal_for_the_next_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "takes"
    keeper, logs = _keeper(folder)
    keeper.start(0, bpm=120.0)
    keeper.recorder.note("player", [0x90, 60, 90], 0)
    keeper.write_pending()
    keeper.recorder.note("player", [0x80, 60, 0], PPQ)  # not journaled yet when the take stops
    keeper.recorder.note("player", [0x90, 64, 90], PPQ)
    keeper.stop(BAR, {})

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writing.tempfile, "mkstemp", full_disk)
    keeper.write_pending()
    assert keeper.failed_saves == 1 and not list(folder.glob("take-*"))
    assert any("kept in its journal" in text for _, text in logs), logs
    monkeypatch.undo()
    later, _ = _keeper(folder)
    (midi_path,) = later.recover()
    notes = miditoolkit.MidiFile(str(midi_path)).instruments[0].notes
    assert [(n.pitch, n.start, n.end) for n in notes] == [(60, 0, PPQ), (64, PPQ, BAR)]


def test_a_journal_write_on_a_full_disk_is_cut_back_to_whole_lines_and_retried(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rec = TakeRecorder(tmp_path)
    rec.start(0, bpm=120.0)
    serial, header, records = rec.journal_delta()
    journal = JournalFile(tmp_path, serial, header)
    journal.append(records)
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError):
        journal.append([("n", "player", 0, 0x90, 60, 90)])
    assert parse(journal.path.read_bytes()).bad_lines == 0  # no half line left
    monkeypatch.undo()
    journal.append([("n", "player", 5, 0x80, 60, 0)])
    assert parse(journal.path.read_bytes()).records == (("t", 0, 120.0), ("n", "player", 0, 0x90, 60, 90),
                                                        ("n", "player", 5, 0x80, 60, 0))
    journal.remove()
    assert not journal.path.exists()


def test_unrecoverable_and_odd_journals_are_said_and_never_raise(tmp_path: Path) -> None:
    logs: list[tuple[str, str]] = []
    (tmp_path / ".take-junk.journal").write_bytes(b"\x00garbage")
    os.mkfifo(tmp_path / ".take-fifo.journal")
    (tmp_path / ".take-dir.journal").mkdir()
    assert recover_journals(tmp_path, lambda level, text: logs.append((level, text))) == []
    assert not (tmp_path / ".take-junk.journal").exists()  # held nothing: removed
    assert (tmp_path / ".take-fifo.journal").exists()  # not ours: left alone
    assert any("held no notes" in text for _, text in logs) and any("not a regular file" in t for _, t in logs)
    assert recover_journals(tmp_path / "missing", lambda level, text: None) == []


def test_the_recovered_take_is_named_for_when_it_was_played(tmp_path: Path) -> None:
    rec = TakeRecorder(tmp_path, wall_clock=lambda: datetime(2026, 5, 9, 21, 30, 5))
    _play(rec)
    data, _, _ = _journal_bytes(rec)
    (tmp_path / ".take-x.journal").write_bytes(data)
    (midi_path,) = recover_journals(tmp_path, lambda level, text: None)
    assert midi_path.name == "take-20260509-213005.mid"


def test_a_journal_that_failed_mid_take_still_ends_with_every_record_once(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "takes"
    keeper, logs = _keeper(folder)
    keeper.start(0, bpm=120.0)
    keeper.recorder.note("player", [0x90, 60, 90], 0)
    keeper.write_pending()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    keeper.recorder.note("player", [0x80, 60, 0], PPQ)
    keeper.write_pending()  # the journal round fails: said once, its records kept for the next write
    keeper.write_pending()
    assert sum("cannot keep a journal" in text for _, text in logs) == 1, logs
    monkeypatch.undo()
    keeper.recorder.note("player", [0x90, 62, 90], PPQ)
    keeper.stop(BAR, {})
    monkeypatch.setattr(writing.tempfile, "mkstemp", full)
    keeper.write_pending()  # the save fails: the journal gets the rest
    monkeypatch.undo()
    (journal,) = _journals(folder)
    notes = [r for r in parse(journal.read_bytes()).records if r[0] == "n"]
    assert [(r[3] & 0xF0, r[4]) for r in notes] == [(0x90, 60), (0x80, 60), (0x90, 62)]
