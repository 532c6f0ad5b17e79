"""The runtime's side of recording: takes start and stop on the engine thread; journals, saving and recovery
happen on the supervisor thread (and at close), never on a timing thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from companion.errors import CompanionError
from companion.takes.journal import JournalFile, recover_journals
from companion.takes.recording import (
    FOLLOWED_TEMPO_RESOLUTION_BPM,
    TEMPO_RESOLUTION_BPM,
    FinishedTake,
    TakeRecorder,
    ensure_folder,
    write_take_files,
)


class TakeKeeper:
    """Starts and stops the recorder's takes (engine thread); `write_pending()` (supervisor thread, every
    quarter second, and at close) appends the running take to its journal, fsync'd, and saves stopped takes,
    removing their journals; `recover()` turns journals a dead session left into takes."""

    def __init__(self, recorder: TakeRecorder | None, log: Callable[[str, str], None]) -> None:
        self.recorder = recorder
        self._log = log
        self._finished: list[FinishedTake] = []
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self.failed_saves = 0  # takes that could not be written: the session's exit code says so
        self._journals: dict[int, JournalFile] = {}  # by take serial; the supervisor thread's alone
        self._backlog: tuple[int, Mapping[str, Any], list[tuple[Any, ...]]] | None = None  # not in a file yet
        self._journal_failed: set[int] = set()  # takes whose journal trouble was said (once each)

    @property
    def recording(self) -> bool:
        return self.recorder is not None and self.recorder.recording

    # --- engine thread ---------------------------------------------------------------------------------

    def start(self, start_ticks: int, **info: Any) -> None:
        if self.recorder is None:
            self._log("warning", "recording needs a take folder: start with --record DIR")
            return
        if self.recording:  # a take runs: it ends here and is kept, not dropped
            self.stop(start_ticks, {})
        self.recorder.start(start_ticks, **info)
        self._log("info", f"recording a take into {self.recorder.directory}")

    def follow_clock(self, ticks: int, bpm: float, followed: bool) -> None:
        """The take's tempo map follows the clock: the engine thread calls this every tick; a cheap no-op
        unless a take is running."""
        if self.recording:
            self.recorder.tempo(ticks, bpm, FOLLOWED_TEMPO_RESOLUTION_BPM if followed else TEMPO_RESOLUTION_BPM)

    def stop(self, end_ticks: int, timings: Mapping[str, Any]) -> None:
        if not self.recording:
            return
        finished = self.recorder.finish(end_ticks, timings)
        if finished is None:
            return
        if finished.notes:
            self._log("info", f"take stopped: saving it into {self.recorder.directory}")
        else:
            self._log("warning", "take stopped: it was empty (nothing was played), so no file was written")
        with self._lock:
            self._finished.append(finished)  # an empty one too: its journal goes

    # --- supervisor thread (and close) -----------------------------------------------------------------

    def recover(self) -> list[Path]:
        """Takes a session that died while recording left in our take folder, written as takes (the log says
        where); done once at start, before this session journals anything."""
        return [] if self.recorder is None else recover_journals(self.recorder.directory, self._log)

    def write_pending(self) -> None:
        with self._writing:  # the supervisor's round and close() may overlap when a write is slow
            with self._lock:
                finished, self._finished = self._finished, []
            for take in finished:
                self._save(take)
            self._journal_running()

    def _save(self, finished: FinishedTake) -> None:
        journal = self._journals.pop(finished.serial, None)
        if self._backlog is not None and self._backlog[0] == finished.serial:
            self._backlog = None
        take = finished.build()
        if take is None:
            if journal is not None:
                self._remove(journal)
            return
        try:
            midi_path, _ = write_take_files(take, self.recorder.directory, datetime.now())
        except (CompanionError, OSError, ValueError) as err:  # ValueError: a value no MIDI file holds (mido)
            self.failed_saves += 1
            text = err.message if isinstance(err, CompanionError) else (getattr(err, "strerror", None) or str(err))
            self._log("error", f"could not save the take into {self.recorder.directory}: {text}; "
                               "choose another folder with --record DIR")
            if journal is not None:
                self._keep(journal, finished)
            return
        self._log("info", f"take saved: {midi_path}")
        if journal is not None:
            self._remove(journal)

    def _keep(self, journal: JournalFile, finished: FinishedTake) -> None:
        """The take could not be saved: its journal gets the rest of it and stays for the next start."""
        try:
            journal.append([*finished.records[journal.records:], ("e", finished.end_ticks)])
            self._log("warning", f"the take is kept in its journal {journal.path}: the next session started "
                                 "with this take folder recovers it")
        except OSError as err:
            self._log("warning", f"the take's journal {journal.path} keeps it only up to the last second or so "
                                 f"({err.strerror or err}); the next session recovers that much")
        journal.close()

    def _remove(self, journal: JournalFile) -> None:
        try:
            journal.remove()
        except OSError as err:
            self._log("warning", f"could not remove the take journal {journal.path} ({err.strerror or err}): "
                                 "the take was saved; the next start may recover it a second time")

    def _journal_running(self) -> None:
        """The running take's new records into its journal, written whole and fsync'd."""
        delta = self.recorder.journal_delta() if self.recorder is not None else None
        if delta is None:
            return
        serial, header, records = delta
        if self._backlog is None or self._backlog[0] != serial:
            self._backlog = (serial, header, [])
        self._backlog[2].extend(records)
        journal = self._journals.get(serial)
        try:
            if journal is None:
                ensure_folder(self.recorder.directory)
                journal = self._journals[serial] = JournalFile(self.recorder.directory, serial, header)
            pending, self._backlog = self._backlog[2], None  # the file queues what it could not write yet
            journal.append(pending)
        except (CompanionError, OSError) as err:
            if serial not in self._journal_failed:
                self._journal_failed.add(serial)
                text = err.message if isinstance(err, CompanionError) else (err.strerror or str(err))
                self._log("warning", f"cannot keep a journal of this take in {self.recorder.directory} ({text}): "
                                     "a crash before the take is stopped would lose it")
