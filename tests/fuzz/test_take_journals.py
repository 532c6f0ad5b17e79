"""Take journals left by a crash (issue 13, point 7): damaged bytes, or records crafted with a valid checksum and a
hostile value anywhere, are recovered as far as they go; never a traceback, no file outside the take folder."""

from __future__ import annotations

import json
import tempfile
import zlib
from pathlib import Path

from hostile import HOSTILE_VALUES, fuzz, mutations
from hypothesis import given
from hypothesis import strategies as st

from companion.core.engine import EngineSettings
from companion.core.events import PPQ, Note, Phrase, RequestAnswer
from companion.takes.journal import encode, header_record, recover_journals
from companion.takes.recording import TakeRecorder


def _journal_records() -> list[list]:
    """A take's journal as the runtime writes it, one JSON-like list per line (the header first)."""
    with tempfile.TemporaryDirectory() as folder:
        rec = TakeRecorder(folder)
        rec.start(100, bpm=110.0, settings={"seed": 3, "mode": EngineSettings().mode}, model="markov")
        for k, pitch in enumerate((60, 64, 67)):
            rec.note("player", [0x90, pitch, 90], 4 * PPQ + k * PPQ)
            rec.note("player", [0x80, pitch, 0], 4 * PPQ + k * PPQ + PPQ // 2)
        rec.tempo(8 * PPQ, 90.0)
        rec.answer(RequestAnswer(Phrase((Note(60, 90, 4 * PPQ, PPQ),), 4 * PPQ, 8 * PPQ), 8 * PPQ, 16 * PPQ,
                                 "answer-1", 7, (0, "major"), {"temperature": 0.9}))
        rec.note("companion", [0x90, 72, 80], 8 * PPQ)
        rec.cut("answer-1", 12 * PPQ, "stop")
        rec.settings_changed(12 * PPQ, {"mode": "duet"})
        _, header, records = rec.journal_delta()
    return json.loads(json.dumps([list(header_record(header)), *[list(r) for r in records]]))


RECORDS = _journal_records()


def _line(record: object) -> bytes:
    """A journal line with a valid checksum, whatever it holds (NaN included: JSON readers take it)."""
    text = json.dumps(record, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(text), text)


def _recover(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "takes"
        folder.mkdir()
        (folder / ".take-fuzz.journal").write_bytes(data)
        logs: list[tuple[str, str]] = []
        written = recover_journals(folder, lambda level, text: logs.append((level, text)))
        assert len(logs) == 1 and "Traceback" not in logs[0][1], logs
        names = {p.name for p in folder.iterdir()}
        if written:
            (midi,) = written
            assert names == {midi.name, midi.with_suffix(".json").name}, names
        else:
            assert names <= {".take-fuzz.journal"}, names
        assert {p.name for p in Path(root).iterdir()} == {"takes"}


@fuzz(150)
@given(st.data())
def test_a_record_with_a_hostile_value_and_a_valid_checksum_is_left_out_or_recovered(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(RECORDS) - 1))
    records = list(RECORDS)
    records[index] = data.draw(mutations(records[index]))
    _recover(b"".join(_line(record) for record in records))


@fuzz(150)
@given(st.data())
def test_damaged_bytes_anywhere_never_raise(data: st.DataObject) -> None:
    blob = bytearray(b"".join(encode(record) for record in RECORDS))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(blob)))
        how = data.draw(st.sampled_from(["cut", "flip", "insert", "delete"]))
        if how == "cut":
            del blob[at:]
        elif how == "flip" and at < len(blob):
            blob[at] ^= data.draw(st.integers(1, 255))
        elif how == "insert":
            blob[at:at] = data.draw(st.binary(max_size=40))
        else:
            del blob[at:at + data.draw(st.integers(1, 40))]
    _recover(bytes(blob))


@fuzz(60)
@given(st.lists(HOSTILE_VALUES, min_size=1, max_size=6))
def test_records_of_any_shape_never_raise(values: list) -> None:
    _recover(_line(RECORDS[0]) + b"".join(_line([kind, *values]) for kind in ("n", "t", "a", "c", "s", "e", "h")))
