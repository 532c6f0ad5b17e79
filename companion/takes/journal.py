"""Take journals: a running take's records appended to a file beside the takes, so a crash keeps what was played.

One record a line, `CRC32 JSON\n` (the CRC, 8 hex digits, over the JSON's bytes): a line cut by a crash or a full
disk has no newline and is left out, a damaged one fails its CRC and is skipped, every other line still counts.
The first record is the take's header (`["h", {...}]`), the others are TakeRecorder's records as JSON arrays,
and `["e", ticks]` where a take that could not be saved was stopped.
A session holds an exclusive lock on its journal while it writes it: the next session recovers only journals
whose writer is gone (its lock went with it, whatever killed it) into a normal take, then removes them.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from companion.core.events import PPQ
from companion.errors import CompanionError
from companion.takes.recording import PARTS, Take, _jsonable, build_take, write_take_files

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a journal is recovered only once its session stopped writing
    fcntl = None  # type: ignore[assignment]

JOURNAL_FORMAT = "companion-take-journal"
JOURNAL_VERSION = 1
JOURNAL_GLOB = ".take-*.journal"
MAX_JOURNAL_BYTES = 256 << 20  # about 40 hours of dense playing; the rest of a larger file is left out
MAX_TICKS = 0x0FFFFFFF  # a MIDI file's longest delta time (PPQ 480: 77 hours at 120 BPM); beyond it is damage
Log = Callable[[str, str], None]


def encode(record: Sequence[Any]) -> bytes:
    """One journal line: `CRC32 JSON\\n` (ASCII JSON: a newline can only end a line)."""
    plain = record[0] in _PLAIN  # numbers and short strings only: no conversion needed
    text = json.dumps(record if plain else _jsonable(record), separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(text), text)


_PLAIN = frozenset("ntce")  # note, tempo, cut and end records


def header_record(header: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "h", {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "pid": os.getpid(), **header}


# --- reading ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Journal:
    """What a journal file held: its header (None if that line was lost), the records that passed every
    check, and how many lines did not (damaged, cut, or not records we know)."""

    header: dict[str, Any] | None
    records: tuple[tuple[Any, ...], ...]
    bad_lines: int

    def take(self) -> Take | None:
        """The take these records make (ending at the last thing played); None if they hold no note."""
        header = self.header
        if header is None:  # its line was lost: 4/4 at 120 BPM, from the bar line of the first note
            first = min((r[2] for r in self.records if r[0] == "n"), default=0)
            origin = first - first % (4 * PPQ)
            header = {**_DEFAULT_HEADER, "start_ticks": origin, "origin_ticks": origin}
        end_ticks = max((r[1] for r in self.records if r[0] == "e"), default=0)  # else the last note's tick
        return build_take(header, self.records, end_ticks, {}, None)


_DEFAULT_HEADER: dict[str, Any] = {"started_at": "", "start_ticks": 0, "origin_ticks": 0, "bpm": 120.0,
                                   "meter": [4, 4], "clock": "internal", "settings": {}, "extras": {},
                                   "preset": None, "model": "", "checkpoint": None}


def parse(data: bytes) -> Journal:
    """Every whole, intact record of a journal's bytes, in order; never raises on damage."""
    lines = data.split(b"\n")
    cut = lines.pop()  # after the last newline: empty, or a line a crash cut short
    header: dict[str, Any] | None = None
    records: list[tuple[Any, ...]] = []
    bad = 1 if cut else 0
    for line in lines:
        record = _decode(line)
        if record is None:
            bad += 1
        elif record[0] == "h":
            if header is None and not records:
                header = record[1]
            else:
                bad += 1  # a second header is damage
        else:
            records.append(record)
    return Journal(header, tuple(records), bad)


def _decode(line: bytes) -> tuple[Any, ...] | None:
    if len(line) < 10 or line[8:9] != b" ":
        return None
    try:
        crc = int(line[:8], 16)
        text = line[9:]
        if zlib.crc32(text) != crc:
            return None
        record = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, list) or not record or not isinstance(record[0], str):
        return None
    check = _CHECKS.get(record[0])
    return tuple(record) if check is not None and check(record) else None


def _int(value: Any, low: int = 0, high: int = MAX_TICKS) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _header_ok(r: list[Any]) -> bool:
    h = r[1] if len(r) == 2 else None
    if not isinstance(h, dict) or h.get("format") != JOURNAL_FORMAT or not _int(h.get("version"), 1, 1):
        return False
    meter = h.get("meter")
    return (_int(h.get("start_ticks")) and _int(h.get("origin_ticks")) and _bpm(h.get("bpm"))
            and isinstance(meter, list) and len(meter) == 2 and _int(meter[0], 1, 64) and meter[1] in (1, 2, 4, 8, 16)
            and isinstance(h.get("started_at"), str) and isinstance(h.get("clock"), str)
            and isinstance(h.get("settings"), dict) and isinstance(h.get("extras"), dict)
            and (h.get("preset") is None or isinstance(h.get("preset"), dict)) and isinstance(h.get("model"), str)
            and (h.get("checkpoint") is None or isinstance(h.get("checkpoint"), str)))


def _bpm(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        and 1.0 <= value <= 1000.0


def _answer_ok(r: list[Any]) -> bool:
    a = r[1] if len(r) == 2 else None
    if not isinstance(a, dict) or not isinstance(a.get("tag"), str):
        return False
    phrase = a.get("phrase")
    return (_int(a.get("start_ticks")) and _int(a.get("end_ticks")) and isinstance(phrase, dict)
            and _int(phrase.get("start_ticks")) and _int(phrase.get("end_ticks")) and _int(phrase.get("bar_ticks"))
            and isinstance(phrase.get("notes"), list)
            and all(isinstance(n, list) and len(n) == 5 and all(_int(v) for v in n) for n in phrase["notes"]))


_CHECKS: dict[str, Callable[[list[Any]], bool]] = {
    "h": _header_ok,
    "n": lambda r: (len(r) == 6 and r[1] in PARTS and _int(r[2]) and _int(r[3], 0x80, 0x9F) and _int(r[4], 0, 127)
                    and _int(r[5], 0, 127)),
    "t": lambda r: len(r) == 3 and _int(r[1]) and _bpm(r[2]),
    "e": lambda r: len(r) == 2 and _int(r[1]),  # the take was stopped there (and could not be saved)
    "a": _answer_ok,
    "c": lambda r: len(r) == 4 and isinstance(r[1], str) and _int(r[2]) and isinstance(r[3], str),
    "s": lambda r: (len(r) == 5 and _int(r[1]) and isinstance(r[2], dict) and isinstance(r[3], dict)
                    and (r[4] is None or isinstance(r[4], dict))),
}


# --- writing (the supervisor thread) ------------------------------------------------------------------


class JournalFile:
    """One take's journal, open for appending: `append` writes whole lines, flushes and fsyncs them; a write
    that fails (a full disk) is cut back to the last whole line and its lines are tried again next time."""

    def __init__(self, directory: Path, serial: int, header: Mapping[str, Any]) -> None:
        self.serial = serial
        stamp = header.get("started_at", "").replace("-", "").replace(":", "").replace("T", "-") or "take"
        self.path = directory / f".take-{stamp}-{os.getpid()}-{serial}.journal"
        self._pending = bytearray(encode(header_record(header)))
        self.records = 0  # records handed to `append`: written, or queued after a failed write (not the header)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        self._fd: int | None = os.open(self.path, flags, 0o644)
        self._size = 0
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file of ours: free; held till we close

    def append(self, records: Sequence[Sequence[Any]]) -> None:
        """Queue `records` and write everything queued; OSError (the queue kept) if the disk refuses."""
        for record in records:
            self._pending += encode(record)
        self.records += len(records)
        if not self._pending or self._fd is None:
            return
        try:
            written = 0
            while written < len(self._pending):
                written += os.write(self._fd, self._pending[written:])
            os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)  # no half line for the next one to be glued to
            except OSError:
                pass  # the damaged line fails its CRC when read; the lines after it still count
            raise
        self._size += len(self._pending)
        self._pending.clear()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the lock goes with it
            self._fd = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


# --- recovery (the next session's supervisor thread) --------------------------------------------------


def recover_journals(directory: Path, log: Log) -> list[Path]:
    """Every journal in `directory` left by a session that is gone, as a normal take (MIDI + sidecar, written
    atomically); a journal is removed once its take is written, kept (and said) when that fails. Returns the
    MIDI files written."""
    try:
        paths = sorted(directory.glob(JOURNAL_GLOB)) if directory.is_dir() else []
    except OSError as err:
        log("warning", f"{directory}: cannot look for take journals to recover ({err.strerror or err})")
        return []
    written = []
    for path in paths:
        midi = _recover(path, directory, log)
        if midi is not None:
            written.append(midi)
    return written


def _recover(path: Path, directory: Path, log: Log) -> Path | None:
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None  # another session recovered it meanwhile
    except OSError as err:
        log("warning", f"{path}: cannot open this take journal to recover it ({err.strerror or err})")
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            log("warning", f"{path}: not a regular file; left alone (take journals are files Companion writes)")
            return None
        if not _writer_gone(fd, path):
            return None  # a running session's take
        data = os.read(fd, MAX_JOURNAL_BYTES)
        journal = parse(data)
        take = journal.take()
        if take is None:
            path.unlink()
            log("info", f"a take journal held no notes (the take was empty, or it was cut before any); removed {path}")
            return None
        take = _as_recovered(take, path, journal)
        midi_path, _ = write_take_files(take, directory, _started(journal.header, path))
        path.unlink()
        lost = f"; {journal.bad_lines} damaged or cut line(s) left out" if journal.bad_lines else ""
        log("warning", f"recovered a take the last session did not save (it ended without stopping it: a crash or "
                       f"a kill): {midi_path}, from the journal {path.name}{lost}")
        return midi_path
    except (CompanionError, OSError, ValueError) as err:  # ValueError: a value no MIDI file holds (mido)
        text = err.message if isinstance(err, CompanionError) else (getattr(err, "strerror", None) or str(err))
        log("error", f"could not recover the take journal {path}: {text}; it is kept and tried again at the next "
                     "start")
        return None
    finally:
        os.close(fd)


def _writer_gone(fd: int, path: Path) -> bool:
    """Whether no session writes this journal any more (we hold its lock now) and it is still the file at
    `path` (another session may have recovered and removed it between our open and our lock)."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _as_recovered(take: Take, path: Path, journal: Journal) -> Take:
    sidecar = {**take.sidecar, "recovered": {"journal": path.name, "bad_lines": journal.bad_lines,
                                             "header_lost": journal.header is None}}
    return Take(take.notes, take.bpm, take.beats_per_bar, take.beat_unit, take.tempo_changes, sidecar)


def _started(header: Mapping[str, Any] | None, path: Path) -> datetime:
    """The take's start (its file name says when it was played), else the journal's last change."""
    try:
        return datetime.fromisoformat(header["started_at"]) if header else datetime.fromtimestamp(
            path.stat().st_mtime)
    except (ValueError, OSError):
        return datetime.now()
