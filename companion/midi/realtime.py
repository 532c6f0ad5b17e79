"""Real-time priority for Companion's timing threads, always below the audio server's own threads.

Our threads (scheduler, input readers, engine, harmony) take SCHED_FIFO so a busy machine does not make a note
late. They must never outrank JACK: a JACK client whose process thread misses a cycle loses that cycle's MIDI,
ours or the DAW's. JACK 2 runs its server at real-time priority 10 by default and its clients' process threads
at 5, so our ranks sit at 1-4; where the JACK threads living in this process run lower than that, ours go below
them, and where JACK runs without real-time scheduling at all, ours stay at normal priority too.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections.abc import Iterator

# SCHED_FIFO priorities, in the order the threads must win: the scheduler sends on time, a reader stamps
# input as it arrives, the engine answers, the harmony model computes.
SCHEDULER_PRIORITY = 4
READER_PRIORITY = 3
ENGINE_PRIORITY = 2
HARMONY_PRIORITY = 1

JACK_SETTLE_S = 0.1
_jack_threads: set[int] = set()  # native ids of the threads libjack started in this process


def native_threads() -> set[int]:
    """The ids of this process's threads (empty where /proc is missing)."""
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except (OSError, ValueError):
        return set()


def note_jack_client(before: set[int], settle_s: float = JACK_SETTLE_S) -> None:
    """A JACK client was just opened: the native threads that appeared since `before` are JACK's.

    Its process thread takes JACK's real-time priority a moment after it starts: wait (briefly) for that, so a
    thread of ours started next does not take a real-time JACK for a plain one.
    """
    python = {thread.native_id for thread in threading.enumerate()}
    _jack_threads.update(native_threads() - before - python)
    deadline = time.monotonic() + settle_s
    while not jack_priorities() and time.monotonic() < deadline:
        time.sleep(0.002)


def jack_priorities() -> list[int] | None:
    """The real-time priorities of JACK's live threads here: None with no JACK client, [] if none is real-time."""
    alive = _jack_threads & native_threads()
    _jack_threads.intersection_update(alive)
    if not alive:
        return None
    fifo, rr = getattr(os, "SCHED_FIFO", None), getattr(os, "SCHED_RR", None)
    found = []
    for tid in alive:
        try:
            if os.sched_getscheduler(tid) in (fifo, rr):
                found.append(os.sched_getparam(tid).sched_priority)
        except OSError:  # the thread ended while we looked
            continue
    return found


def normal_priority() -> None:
    """Back to normal scheduling for the calling thread (a thread inherits real-time from the one that made it)."""
    setter = getattr(os, "sched_setscheduler", None)
    if setter is not None:
        try:
            setter(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            pass


def try_realtime(priority: int | None) -> str | None:
    """Give the calling thread SCHED_FIFO at `priority` (or below JACK's threads): None on success, else why not.

    On a busy machine this takes scheduler lateness p99 from milliseconds to tens of microseconds.
    """
    if priority is None:
        return "not requested"
    setter = getattr(os, "sched_setscheduler", None)
    if setter is None:
        return "this system has no SCHED_FIFO; timing runs at normal priority"
    jack = jack_priorities()
    if jack:  # the highest is JACK's process thread (its helpers may have inherited a lower one of ours)
        priority = min(priority, max(jack) - 1)
        if priority < 1:
            return (f"JACK's threads run at real-time priority {max(jack)}, leaving none below them; "
                    "timing runs at normal priority (give JACK a priority of 10 or more)")
    elif jack is not None:
        return ("JACK runs without real-time scheduling, so timing stays at normal priority rather than hold "
                "JACK up; start JACK in real-time mode (jackd's default, QjackCtl's Realtime box) for tight timing")
    try:
        setter(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as err:
        return (f"real-time priority refused ({err.strerror}); timing runs at normal priority. "
                "On Linux, allow it with an rtprio limit (e.g. the 'audio' group in /etc/security/limits.d)")
    return None


LOWEST_PRIORITY = HARMONY_PRIORITY


@contextlib.contextmanager
def lowest_realtime() -> Iterator[None]:
    """The calling thread at our lowest real-time rank for the block, then back to normal: a session's imports and
    port opening (about a second of CPU, many seconds at normal priority beside busy programs), or a bench's
    player, which stands for a DAW's MIDI thread."""
    boosted = try_realtime(LOWEST_PRIORITY) is None
    try:
        yield
    finally:
        if boosted:
            normal_priority()


_loading_lock = threading.Lock()
_loading = 0  # model loads under way in this process (threads may load side by side)


@contextlib.contextmanager
def loading_models() -> Iterator[None]:
    """Around loading a model in the real-time process: no automatic garbage collection meanwhile, and what the
    load made frozen after it (kept out of the collector's full passes for as long as it lives).

    A load makes hundreds of thousands of objects (importing torch, building a network); the collector's full
    passes over them took 100-230 ms each (five in a chorale-model load), holding the interpreter lock, so the
    scheduler's thread stood still that long: notes 0.2 s late when a harmony preset came in mid-song. Freezing
    keeps objects alive no longer than their references do; only cyclic garbage made before the freeze stays
    until `thaw_models()` (a runtime's close)."""
    global _loading
    with _loading_lock:
        _loading += 1
        if _loading == 1:
            gc.disable()
    try:
        yield
    finally:
        with _loading_lock:
            _loading -= 1
            if _loading == 0:
                gc.freeze()
                gc.enable()


def thaw_models() -> None:
    """What `loading_models` froze goes back to the collector (a session closing in a process that goes on)."""
    with _loading_lock:
        if _loading == 0:
            gc.unfreeze()
