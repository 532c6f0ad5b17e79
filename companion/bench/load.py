"""`companion bench --load N`: CPU-bound processes beside a run, each row's verdict, busy work to compare with."""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

Row = dict[str, Any]

BUSY_CODE = "while True: pass"  # one core's worth of work at normal priority: what a DAW's plugins look like to us
MAX_LOAD = 64
_TARGET = re.compile(r"^(p50|p99|max) <= ([0-9.]+) ms")


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[list[int]]:
    """`count` CPU-bound processes at normal priority (not real-time, not niced) for the length of the block."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-c", BUSY_CODE], stdin=subprocess.DEVNULL,
                                          preexec_fn=_normal_priority if os.name == "posix" else None))
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def _normal_priority() -> None:
    """In the child before exec: plain SCHED_OTHER at nice 0 whatever the caller runs at."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def load_label(count: int) -> str:
    return "quiet" if count == 0 else f"{count} busy"


def verdict(row: Row) -> bool | None:
    """True (target met), False (missed) or None (the row has no target). A row may give its own `ok`;
    otherwise a target of the form 'p99 <= X ms ...' is checked against the row's figure, and a note
    skipped as too late is a miss whatever the figures say."""
    if "error" in row:
        return None
    if row.get("skipped_late"):
        return False
    if "ok" in row:
        return row["ok"]
    match = _TARGET.match(str(row.get("target", "")))
    if match is None:
        return None
    figure = row.get(f"{match.group(1)}_ms")
    if figure is None or (isinstance(figure, float) and math.isnan(figure)):
        return False  # nothing measured is not a pass
    return figure <= float(match.group(2))


def mark(ok: bool | None) -> str:
    return {True: "✓", False: "✗", None: " "}[ok]


def spin(stop: threading.Event) -> None:
    """Pure Python work at normal priority: it holds the interpreter lock whenever it runs (as a model or UI does)."""
    count = 0
    while not stop.is_set():
        count += 1
