"""Parse sources once into a note cache keyed by file content + tokenizer grid; a process pool; a failure log.

Each source file gets one ``<sha1>.npz`` in the cache folder, holding its pieces and the names of its pieces
that failed (so a rerun from the cache reports the same failures). Nothing is dropped silently: every failure
is counted and written, with its reason, to ``failures.log`` in the cache folder.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.data.midi_folder import midi_files, read_midi
from models.data.music21_corpus import ParseTask, corpus_files, corpus_root, parse_task, tasks_for_file
from models.data.pieces import Piece, pack_pieces, unpack_pieces
from models.tokenizer import TokenizerConfig

CACHE_VERSION = 1
TASK_TIMEOUT_S = 120  # a tune that takes longer than this to parse is counted as failed


@dataclass
class BuildReport:
    """What a corpus build did: pieces read, failures with reasons, cache hits, seconds."""

    pieces: list[Piece] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (piece or file id, reason)
    files: int = 0
    cached_files: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        by_style: dict[str, int] = defaultdict(int)
        for p in self.pieces:
            by_style[p.style] += 1
        return {"pieces": len(self.pieces), "notes": int(sum(len(p.notes) for p in self.pieces)),
                "failures": len(self.failures), "files": self.files, "cached_files": self.cached_files,
                "seconds": round(self.seconds, 1), "by_style": dict(sorted(by_style.items()))}


def cache_key(path: Path, style: str, config: TokenizerConfig) -> str:
    """SHA-1 of the file's bytes, its style, the cache version and the tokenizer config."""
    h = hashlib.sha1()
    h.update(path.read_bytes())
    h.update(f"|{style}|{CACHE_VERSION}|".encode())
    h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


def _alarm(signum: int, frame: object) -> None:
    raise TimeoutError(f"parsing took longer than {TASK_TIMEOUT_S} s")


def _run_task(args: tuple[ParseTask, dict]) -> tuple[ParseTask, list[Piece], str | None]:
    """Worker: parse one task; any error becomes a reason string, counted by the caller."""
    task, cfg = args
    config = TokenizerConfig.from_dict(cfg)
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(TASK_TIMEOUT_S)
    try:
        if task.path.lower().endswith((".mid", ".midi", ".smf", ".kar")):
            piece = read_midi(Path(task.path), task.piece_id, config)
            pieces = [piece] if piece is not None else []
        else:
            pieces = parse_task(task, config)
        if not pieces:
            return task, [], "no notes"
        return task, pieces, None
    except Exception as err:  # noqa: BLE001 - a broken score is counted and logged, never fatal
        return task, [], f"{type(err).__name__}: {str(err)[:200]}"
    finally:
        if hasattr(signal, "SIGALRM"):
            signal.alarm(0)


def _progress(done: int, total: int, started: float, out: Callable[[str], None]) -> None:
    rate = done / max(1e-9, time.monotonic() - started)
    eta = (total - done) / rate if rate > 0 else 0.0
    out(f"\rparsing {done}/{total} tasks  {rate:.1f}/s  eta {eta:.0f} s   ")


def build_pieces(sources: Sequence[tuple[Path, str, str]], cache_dir: Path, config: TokenizerConfig,
                 workers: int = 1, log: Callable[[str], None] | None = None) -> BuildReport:
    """Parse (or load from the cache) every source: (path, style, source id). Writes ``failures.log``."""
    out = log or (lambda s: print(s, end="", file=sys.stderr, flush=True))
    started = time.monotonic()
    cache_dir.mkdir(parents=True, exist_ok=True)
    report = BuildReport(files=len(sources))
    todo: dict[str, tuple[Path, str, str]] = {}
    cfg = config.to_dict()
    for path, style, source in sources:
        key = cache_key(path, style, config)
        entry = cache_dir / f"{key}.npz"
        if entry.exists():
            with np.load(entry, allow_pickle=False) as z:
                report.pieces.extend(unpack_pieces({k: z[k] for k in z.files}))
                report.failures.extend((str(a), str(b)) for a, b in z["failures"].reshape(-1, 2))
            report.cached_files += 1
        else:
            todo[key] = (path, style, source)
    tasks: list[ParseTask] = []
    task_key: dict[str, str] = {}
    for key, (path, style, source) in todo.items():
        for t in tasks_for_file(path, style, source):
            tasks.append(t)
            task_key[t.piece_id] = key
    by_file: dict[str, list[Piece]] = defaultdict(list)
    fails_by_file: dict[str, list[tuple[str, str]]] = defaultdict(list)
    remaining: dict[str, int] = defaultdict(int)
    for t in tasks:
        remaining[task_key[t.piece_id]] += 1
    results: Iterable[tuple[ParseTask, list[Piece], str | None]]
    # whole scores (the slow ones) first, so that no big score starts last and keeps the pool waiting
    tasks.sort(key=lambda t: t.tune_index >= 0)
    args = [(t, cfg) for t in tasks]
    pool = None
    if workers > 1 and len(tasks) > 1:
        # Ctrl-C is the parent's to handle (the workers ignore it: no traceback from each of them).
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=signal.signal,
                                                        initargs=(signal.SIGINT, signal.SIG_IGN))
        results = pool.imap_unordered(_run_task, args, chunksize=1)
    else:
        results = map(_run_task, args)
    finished = False
    try:
        for done, (task, pieces, reason) in enumerate(results, 1):
            key = task_key[task.piece_id]
            by_file[key].extend(pieces)
            if reason is not None:
                fails_by_file[key].append((task.piece_id, reason))
            remaining[key] -= 1
            if remaining[key] == 0:
                _write_entry(cache_dir / f"{key}.npz", by_file[key], fails_by_file[key])
                report.pieces.extend(by_file.pop(key))
                report.failures.extend(fails_by_file.pop(key, []))
            if done % 50 == 0 or done == len(tasks):
                _progress(done, len(tasks), started, out)
        finished = True
    finally:
        if pool is not None:
            if finished:
                pool.close()
            else:  # Ctrl-C or a failure: stop the workers now (files parsed so far stay in the cache)
                pool.terminate()
            pool.join()
    if tasks:
        out("\n")
    report.pieces.sort(key=lambda p: p.piece_id)
    report.failures.sort()
    report.seconds = time.monotonic() - started
    (cache_dir / "failures.log").write_text(
        f"# {len(report.failures)} pieces or files failed to parse (id<TAB>reason)\n"
        + "".join(f"{a}\t{b}\n" for a, b in report.failures), encoding="utf-8")
    return report


def _write_entry(path: Path, pieces: list[Piece], failures: list[tuple[str, str]]) -> None:
    arrays = pack_pieces(pieces)
    arrays["failures"] = np.array(failures, dtype=str).reshape(-1, 2)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # one per process: torchrun ranks may parse the same file
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def corpus_sources(styles: tuple[str, ...] | None = None, limit_per_style: int | None = None,
                   root: Path | None = None) -> list[tuple[Path, str, str]]:
    """(path, style, source id) for music21's corpus; ``limit_per_style`` files each (for smoke runs)."""
    root = root or corpus_root()
    out: list[tuple[Path, str, str]] = []
    count: dict[str, int] = defaultdict(int)
    for path, style in corpus_files(root, styles):
        if limit_per_style is not None and count[style] >= limit_per_style:
            continue
        count[style] += 1
        out.append((path, style, f"music21:{path.relative_to(root).as_posix()}"))
    return out


def midi_sources(folder: Path) -> list[tuple[Path, str, str]]:
    """(path, "user", source id) for every MIDI file of a user folder."""
    return [(p, "user", f"user:{p.relative_to(folder).as_posix()}") for p in midi_files(folder)]
