"""Session recording: each take as a type-1 MIDI file (tempo, player, companion) plus a JSON sidecar, both atomic."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from companion.core.events import PPQ, Note, RequestAnswer
from companion.errors import CompanionError
from companion.files.midifile import write_take
from companion.files.writing import write_atomically

SIDECAR_FORMAT = "companion-take"
SIDECAR_VERSION = 1
PARTS = ("player", "companion")
TEMPO_RESOLUTION_BPM = 0.01  # smaller tempo changes are not worth a tempo event
FOLLOWED_TEMPO_RESOLUTION_BPM = 0.1  # a DAW's clock, fitted pulse by pulse, wobbles by hundredths
FILE_MIN_BPM = 3.58  # a MIDI file's slowest tempo (0xFFFFFF microseconds a beat); the clock may go down to 1 BPM


class RecordingError(CompanionError):
    """The take folder cannot be used."""

    title = "Recording error"


@dataclass(frozen=True)
class Take:
    """One finished take, ready to write: notes and tempo changes in ticks from the take's first bar line."""

    notes: Mapping[str, tuple[Note, ...]]
    bpm: float
    beats_per_bar: int
    beat_unit: int
    tempo_changes: tuple[tuple[int, float], ...]
    sidecar: Mapping[str, Any]


def _sha256(path: str | Path) -> str | None:
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


TAKES_DIR_ENV = "COMPANION_TAKES_DIR"


def default_takes_dir() -> Path:
    """Where the record key saves takes when no --record DIR was given: $COMPANION_TAKES_DIR, else a
    "Companion takes" folder in the user's music folder (platformdirs), created with the first take."""
    if os.environ.get(TAKES_DIR_ENV):
        return Path(os.environ[TAKES_DIR_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_music_dir()) / "Companion takes"


class TakeRecorder:
    """Collects a take while it is played; the hot-path calls (`note`, `tempo`) only append under a lock.

    Feed it the wire: the player's note messages as the engine thread sees them, Companion's as the scheduler
    sends them, each with the tick it happened at. A take is its start (`header`) and the records appended
    since, in order: `build_take` makes the files' content from them, and a journal (companion.takes.journal)
    holds the same records, so a take that a crash interrupted is rebuilt exactly as `stop()` would have.
    `stop()` is cheap; `save()` does file I/O and hashing: call it off the engine and scheduler threads.
    """

    def __init__(self, directory: str | Path, *, wall_clock: Callable[[], datetime] = datetime.now,
                 monotonic_ns: Callable[[], int] = time.monotonic_ns, create: bool = True) -> None:
        """`create`: make and check the folder now (--record DIR: a bad folder fails at start); else it is
        made when the first take is written (the default folder, which a session may never use)."""
        self.directory = Path(directory).expanduser()
        if create:
            ensure_folder(self.directory)
        self._wall_clock = wall_clock
        self._monotonic_ns = monotonic_ns
        self._lock = threading.Lock()
        self._active = False
        self._serial = 0  # one per take started: a journal knows which take it belongs to
        self._reset()

    def _reset(self) -> None:
        self._header: dict[str, Any] = {}
        self._records: list[tuple[Any, ...]] = []
        self._journaled = 0  # records handed to the journal so far
        self._notes = 0
        self._bpm: float | None = None  # the last tempo kept
        self._started_ns = 0

    @property
    def recording(self) -> bool:
        return self._active

    def start(self, start_ticks: int, *, bpm: float, beats_per_bar: int = 4, beat_unit: int = 4,
              settings: Mapping[str, Any] | None = None, extras: Mapping[str, Any] | None = None,
              preset: Any = None, model: str = "", checkpoint: str | Path | None = None,
              clock: str = "internal") -> None:
        """Begin a take at `start_ticks` (it starts on the bar line at or before); a running take is dropped."""
        bar_ticks = beats_per_bar * PPQ * 4 // beat_unit
        bpm = round(float(bpm), 2)
        with self._lock:
            self._reset()
            self._active = True
            self._serial += 1
            self._started_ns = self._monotonic_ns()
            self._header = {
                "started_at": self._wall_clock().isoformat(timespec="seconds"),
                "start_ticks": start_ticks, "origin_ticks": max(0, start_ticks - start_ticks % bar_ticks),
                "bpm": bpm, "meter": [beats_per_bar, beat_unit], "clock": clock,
                "settings": dict(settings or {}), "extras": dict(extras or {}), "preset": _preset_info(preset),
                "model": model, "checkpoint": str(checkpoint) if checkpoint else None,
            }
            self._records.append(("t", start_ticks, bpm))
            self._bpm = bpm

    # --- hot path -------------------------------------------------------------------------------------

    def note(self, part: str, data: Sequence[int], ticks: int) -> None:
        """A raw MIDI message of `part` ("player" or "companion"); anything but note on/off is ignored."""
        if not self._active or len(data) < 3 or data[0] & 0xF0 not in (0x80, 0x90):
            return
        with self._lock:
            if self._active:
                self._records.append(("n", part, ticks, data[0], data[1], data[2]))
                self._notes += 1

    def tempo(self, ticks: int, bpm: float, resolution: float = TEMPO_RESOLUTION_BPM) -> None:
        """The clock's tempo at `ticks`; repeats and changes under `resolution` BPM are dropped."""
        bpm = round(float(bpm), 2)
        with self._lock:
            if not self._active or (self._bpm is not None and abs(self._bpm - bpm) < resolution):
                return
            self._records.append(("t", ticks, bpm))
            self._bpm = bpm

    # --- engine thread --------------------------------------------------------------------------------

    def answer(self, request: RequestAnswer, generation_ms: float | None = None) -> None:
        """An answer asked of the generator: kept with its phrase and seed so it can be generated again."""
        phrase = request.phrase
        with self._lock:
            if not self._active:
                return
            self._records.append(("a", {
                "tag": request.tag, "seed": request.seed, "start_ticks": request.start_ticks,
                "end_ticks": request.end_ticks, "key": list(request.key) if request.key else None,
                "phrase": {"start_ticks": phrase.start_ticks, "end_ticks": phrase.end_ticks,
                           "bar_ticks": phrase.bar_ticks,
                           "notes": [[n.pitch, n.velocity, n.start_ticks, n.duration_ticks, n.channel]
                                     for n in phrase.notes]},
                "settings": _jsonable(request.settings),
                "generation_ms": generation_ms,
            }))

    def cut(self, tag: str, from_ticks: int, how: str) -> None:
        """An answer stopped or ducked live from `from_ticks` (the player came back in, a panic): kept in the
        sidecar, so that a replay (which plays every answer whole) can say so."""
        with self._lock:
            if self._active:
                self._records.append(("c", tag, from_ticks, how))

    def settings_changed(self, ticks: int, settings: Mapping[str, Any], extras: Mapping[str, Any] | None = None,
                         preset: Any = None) -> None:
        """Settings (or the preset) changed during the take."""
        with self._lock:
            if self._active:
                self._records.append(("s", ticks, dict(settings), dict(extras or {}), _preset_info(preset)))

    def finish(self, end_ticks: int, timings: Mapping[str, Any] | None = None) -> FinishedTake | None:
        """End the take at `end_ticks` without building it (cheap: the engine thread's part of a stop); None if
        no take runs. Its files come from `FinishedTake.build()`, off the timing threads."""
        with self._lock:
            if not self._active:
                return None
            self._active = False
            finished = FinishedTake(self._serial, self._header, tuple(self._records), end_ticks, dict(timings or {}),
                                    round((self._monotonic_ns() - self._started_ns) / 1e9, 3), self._notes)
            self._reset()
        return finished

    def journal_delta(self) -> tuple[int, Mapping[str, Any], list[tuple[Any, ...]]] | None:
        """The running take's serial, header and the records not handed out before (for its journal); None if
        no take runs. A quick slice under the lock: the journal's file I/O happens on its caller's thread."""
        with self._lock:
            if not self._active:
                return None
            delta = self._records[self._journaled:]
            self._journaled = len(self._records)
            return self._serial, self._header, delta

    def stop(self, end_ticks: int, timings: Mapping[str, Any] | None = None) -> Take | None:
        """End the take at `end_ticks` (notes still sounding end there); None if nothing was played."""
        finished = self.finish(end_ticks, timings)
        return None if finished is None else finished.build()

    def save(self, end_ticks: int, timings: Mapping[str, Any] | None = None) -> tuple[Path, Path] | None:
        """`stop()` and write the take's files; None if nothing was played. Does I/O: not on a timing thread."""
        take = self.stop(end_ticks, timings)
        return None if take is None else write_take_files(take, self.directory, self._wall_clock())


@dataclass(frozen=True)
class FinishedTake:
    """A stopped take as it was recorded: its header and records (what its journal holds), not yet built."""

    serial: int
    header: Mapping[str, Any]
    records: tuple[tuple[Any, ...], ...]
    end_ticks: int
    timings: Mapping[str, Any]
    duration_s: float | None
    notes: int  # note messages among the records: 0 is an empty take

    def build(self) -> Take | None:
        return build_take(self.header, self.records, self.end_ticks, self.timings, self.duration_s)


def build_take(header: Mapping[str, Any], records: Iterable[Sequence[Any]], end_ticks: int,
               timings: Mapping[str, Any] | None = None, duration_s: float | None = None) -> Take | None:
    """A take's content from its header and records (see TakeRecorder); None if no note was played."""
    events: list[tuple[str, int, int, int, int]] = []
    tempo: list[tuple[int, float]] = []
    answers: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    for record in records:
        kind = record[0]
        if kind == "n":
            events.append(tuple(record[1:]))  # type: ignore[arg-type]
        elif kind == "t":
            ticks, bpm = record[1], record[2]
            if tempo and tempo[-1][0] >= ticks:  # two changes at one tick: the later one holds
                tempo[-1] = (tempo[-1][0], bpm)
            else:
                tempo.append((ticks, bpm))
        elif kind == "a":
            answers.append(copy.deepcopy(dict(record[1])))
        elif kind == "c":
            _, tag, from_ticks, how = record
            for answer in answers:
                if answer["tag"] == tag and from_ticks < answer["end_ticks"]:
                    answer.setdefault("cut", []).append([how, from_ticks])
        elif kind == "s":
            changes.append({"ticks": record[1], "settings": record[2], "extras": record[3], "preset": record[4]})
    if not events:
        return None
    origin, start = header["origin_ticks"], header["start_ticks"]
    beats_per_bar, beat_unit = header["meter"]
    end_ticks = max(end_ticks, max(e[1] for e in events))
    notes = {part: tuple(_pair(events, part, end_ticks, origin)) for part in PARTS}
    shift = [(max(0, t - origin), max(FILE_MIN_BPM, bpm)) for t, bpm in tempo or [(origin, header["bpm"])]]
    bpm, changes_rel = shift[0][1], tuple(shift[1:])
    for answer in answers:
        answer["start_ticks"] -= origin
        answer["end_ticks"] -= origin
        phrase = answer["phrase"]
        phrase["start_ticks"] -= origin
        phrase["end_ticks"] -= origin
        for note in phrase["notes"]:
            note[2] -= origin
        for cut in answer.get("cut", ()):
            cut[1] = max(0, cut[1] - origin)
    settings = header["settings"]
    sidecar = {
        "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION,
        "started_at": header["started_at"], "duration_s": duration_s,
        "ppq": PPQ, "origin_ticks": origin, "start_ticks": start - origin, "end_ticks": end_ticks - origin,
        "tempo": {"bpm": bpm, "beats_per_bar": beats_per_bar, "beat_unit": beat_unit,
                  "changes": [list(c) for c in changes_rel], "clock": header["clock"]},
        "preset": header["preset"], "settings": settings, "extras": header["extras"],
        "seed": settings.get("seed"),
        "settings_changes": [{**c, "ticks": max(0, c["ticks"] - origin)} for c in changes],
        "model": {"name": header["model"], "checkpoint": header["checkpoint"]},
        "answers": answers,
        "notes": {part: len(notes[part]) for part in PARTS},
        "timings": dict(timings or {}),
    }
    return Take(notes, bpm, beats_per_bar, beat_unit, changes_rel, _jsonable(sidecar))


def ensure_folder(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RecordingError(f"{directory}: cannot create the take folder ({err.strerror}); "
                             f"choose a folder you can write to with --record DIR") from None
    if not os.access(directory, os.W_OK):
        raise RecordingError(f"{directory}: the take folder is not writable; choose another with --record DIR")


def _preset_info(preset: Any) -> dict[str, Any] | None:
    if preset is None:
        return None
    if isinstance(preset, str):
        return {"id": preset}
    return {"id": preset.id, "name": preset.name, "origin": preset.origin,
            "path": str(preset.path) if preset.path else None, "sha256": preset.sha256}


def _pair(events: Iterable[tuple[str, int, int, int, int]], part: str, end_ticks: int, origin: int) -> list[Note]:
    """Note-ons and note-offs of one part into Notes (first on, first off); still sounding ones end at `end_ticks`."""
    open_notes: dict[tuple[int, int], list[tuple[int, int]]] = {}
    notes: list[Note] = []
    for who, ticks, status, pitch, velocity in events:
        if who != part:
            continue
        channel = status & 0x0F
        if status & 0xF0 == 0x90 and velocity > 0:
            open_notes.setdefault((channel, pitch), []).append((ticks, velocity))
            continue
        starts = open_notes.get((channel, pitch))
        if starts:
            start, on_velocity = starts.pop(0)
            if ticks > start:  # struck again at the tick it began: no note (as `without_overlaps` writes it)
                notes.append(_note(pitch, on_velocity, start, ticks, channel, origin))
    for (channel, pitch), starts in open_notes.items():
        notes.extend(_note(pitch, velocity, start, end_ticks, channel, origin) for start, velocity in starts)
    return sorted(notes, key=lambda n: (n.start_ticks, n.pitch))


def _note(pitch: int, velocity: int, start: int, end: int, channel: int, origin: int) -> Note:
    start_rel = max(0, start - origin)
    return Note(pitch, velocity, start_rel, max(1, end - origin - start_rel), channel)


def _free_stem(directory: Path, stamp: datetime) -> str:
    base = f"take-{stamp:%Y%m%d-%H%M%S}"
    stem, n = base, 1
    while (directory / f"{stem}.mid").exists() or (directory / f"{stem}.json").exists():
        n += 1
        stem = f"{base}-{n}"
    return stem


def write_take_files(take: Take, directory: str | Path, stamp: datetime | None = None) -> tuple[Path, Path]:
    """`take-YYYYmmdd-HHMMSS.mid` (tempo, player, companion tracks) and its `.json` sidecar, each atomically."""
    directory = Path(directory)
    ensure_folder(directory)
    stem = _free_stem(directory, stamp or datetime.now())
    midi_path, json_path = directory / f"{stem}.mid", directory / f"{stem}.json"
    write_take(midi_path, [(part, take.notes[part]) for part in PARTS], take.bpm, take.beats_per_bar,
               take.beat_unit, take.tempo_changes)
    sidecar = dict(take.sidecar)
    checkpoint = sidecar["model"].get("checkpoint")
    sidecar["model"] = {**sidecar["model"], "checkpoint_sha256": _sha256(checkpoint) if checkpoint else None}
    sidecar["midi_file"] = midi_path.name
    sidecar["created"] = (stamp or datetime.now()).isoformat(timespec="seconds")
    text = json.dumps(sidecar, indent=2, sort_keys=False) + "\n"
    write_atomically(json_path, lambda handle: handle.write(text.encode("utf-8")))  # no .tmp left on a full disk
    return midi_path, json_path
