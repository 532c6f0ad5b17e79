"""The only writer to the output: notes at absolute deadlines from the clock, the note ledger, lateness."""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from companion.core.events import (
    CC_ALL_NOTES_OFF,
    CC_ALL_SOUND_OFF,
    ChannelMessage,
    ControlChange,
    Note,
    NoteOff,
    NoteOn,
    PitchBend,
)
from companion.core.notes import NoteLedger
from companion.core.timebase import Timebase
from companion.midi.codec import encode
from companion.midi.realtime import SCHEDULER_PRIORITY, try_realtime

SendBytes = Callable[[list[int]], None]
SendBytesAt = Callable[[list[int], int], None]  # (bytes, the monotonic ns they are due): a timed output places them
NoteTap = Callable[[list[int], int], None]  # (note-on/off bytes, the tick it stands at in the music)
SPIN_NS = 1_000_000  # wait on the condition until this close to a deadline, then spin to it
MAX_WAIT_NS = 20_000_000  # re-read the timebase at least this often (tempo changes move pending notes)
# Planned notes go to a timed output (our JACK client) this long before they are due: a scheduler thread that a
# busy machine holds back for less than this still has them written at their exact frame.
HAND_AHEAD_NS = 25_000_000
LATE_TOLERANCE_NS = 15_000_000  # a note-on later than this is skipped (counted); note-offs are never skipped
DUCK_FACTOR = 0.4
LATENESS_CAPACITY = 8192
_MAX_CANCEL_MARKS = 256
_OFF, _ON = 0, 1  # at one tick, note-offs go before note-ons (a repeated note re-strikes cleanly)


class Clock(Protocol):
    def timebase(self) -> Timebase: ...


class Scheduler:
    """Plays submitted notes on time through `send`, from one thread that is the only writer to the output.

    Every call from other threads (`submit`, `cancel`, `send_now`, `panic`, `close`) only queues a command
    and wakes the thread. The thread re-reads `clock.timebase()` before every wait, waits on a condition
    until about 1 ms before the next deadline, then spins to it. `step(now_ns)` is the thread's pure work,
    callable directly from tests with a fake time.
    """

    def __init__(self, send: SendBytes, clock: Clock, *,
                 on_error: Callable[[BaseException], None] | None = None,
                 late_tolerance_ns: int = LATE_TOLERANCE_NS, duck_factor: float = DUCK_FACTOR,
                 lateness_capacity: int = LATENESS_CAPACITY,
                 now_ns: Callable[[], int] = time.monotonic_ns,
                 realtime_priority: int | None = SCHEDULER_PRIORITY, send_ahead_ns: int = 0,
                 on_note: NoteTap | None = None, send_at: SendBytesAt | None = None, hand_ahead_ns: int = 0,
                 timed: Callable[[], bool] = lambda: True) -> None:
        self._send = send
        # A timed output (our JACK client) writes each note at the frame it is due: planned notes are handed to it
        # `hand_ahead_ns` before their time with that time, so a thread that wakes late (a busy machine) is still
        # on time. Immediate sends (thru, harmony, stops) still go through `send`. `timed()` says whether the
        # outputs are such now (the player may switch ports to another backend).
        self._send_at = send_at if hand_ahead_ns > 0 else None
        self._hand_ahead_ns = hand_ahead_ns
        self._timed = timed
        self._due_ns: int | None = None  # the due time of the timed send being made, else None
        # Told every note message sent, with its planned tick (a take records what was played, to the tick, so a
        # replay of its answers is exact); an immediate send (thru, harmony, a stop) gets the clock's tick now.
        self._on_note = on_note
        self._at_ticks: int | None = None  # the planned tick of the timed send being made, else None
        # Output latency compensation: JACK delivers at the next period boundary, so sending half a
        # period ahead centres the arrival on the beat (the runtime knows the period; 0 = exact deadlines).
        self._send_ahead_ns = send_ahead_ns
        self._realtime_priority = realtime_priority
        # Why the thread runs at normal priority (None: it got SCHED_FIFO); for the log, set by the thread.
        self.realtime_problem: str | None = None
        self._clock = clock
        self._on_error = on_error
        self._late_tolerance_ns = late_tolerance_ns
        self._duck_factor = duck_factor
        self._now_ns = now_ns
        self._cond = threading.Condition(threading.RLock())  # re-entrant: close() may run in a signal handler
        self._inbox: deque[tuple[Any, ...]] = deque()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._direct_lock = threading.RLock()  # serialises direct (thread-less) use of the state below
        # Owned by the scheduler thread (or by the caller when no thread runs):
        self._heap: list[tuple[int, int, int, Any]] = []  # (ticks, _OFF/_ON, seq, payload)
        self._seq = 0
        self._ledger = NoteLedger()
        self._owner: dict[tuple[int, int], tuple[int, str]] = {}  # sounding key -> (note id, tag)
        self._channels_used: set[int] = set()
        self._stopped: dict[str, int] = {}  # tag -> from_ticks
        self._ducked: dict[str, int] = {}
        self._epoch = getattr(clock, "epoch", 0)
        self._lateness_ns = [0] * lateness_capacity
        self._lateness_count = 0
        self.counts = {"note_on": 0, "note_off": 0, "skipped_late": 0, "cancelled": 0, "dropped_on_jump": 0,
                       "retriggered": 0}

    # --- calls from any thread -----------------------------------------------------------------------

    @property
    def hands_ahead(self) -> bool:
        """Planned notes go to a timed output ahead of their time (when `timed()` says the outputs are such)."""
        return self._send_at is not None

    def start(self) -> Scheduler:
        with self._cond:
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(target=self._run, name="companion-scheduler", daemon=True)
                self._thread.start()
        return self

    def submit(self, notes: Iterable[Note], tag: str) -> None:
        """Queue notes (absolute ticks) under `tag`; cheap, thread-safe; ValueError on a bad note."""
        batch = tuple(notes)
        for note in batch:
            if not (0 <= note.channel <= 15 and 0 <= note.pitch <= 127 and 1 <= note.velocity <= 127
                    and note.duration_ticks >= 0):
                raise ValueError(f"cannot schedule {note!r} (tag {tag!r}): channel 0..15, pitch 0..127, "
                                 "velocity 1..127 and a duration >= 0 ticks are needed")
        if batch:
            self._command(("submit", batch, tag))

    def cancel(self, tag: str, from_ticks: int, how: str = "stop") -> None:
        """"stop": drop the tag's notes from `from_ticks`, end its sounding ones now; "duck": softer."""
        if how not in ("stop", "duck"):
            raise ValueError(f"cancel how={how!r}: use 'stop' or 'duck'")
        self._command(("cancel", tag, from_ticks, how))

    def send_now(self, message: ChannelMessage, tag: str = "thru") -> None:
        """Send at once (thru, harmony), through the ledger so it is closed on stop like everything else.

        The send happens on the caller's thread, under the lock the scheduler thread sends under and after
        every command queued before it: a live note's thru or harmony costs no thread hop.
        """
        encode(message)  # fail here, in the caller's thread, on a bad message
        with self._cond:
            if self._closing:
                return
            self._inbox.append(("now", message, tag))
        self._direct(self._drain)

    def panic(self) -> None:
        """Note-offs for everything sounding, CC123 on every channel used, pending notes dropped."""
        self._command(("panic",))

    def close(self, timeout_s: float = 2.0) -> None:
        """Panic, then stop the thread. Idempotent, blocks at most `timeout_s`; signal-handler safe."""
        with self._cond:
            if self._closing:
                return
            self._inbox.append(("panic",))
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            self._direct(self._drain)
        elif thread is not threading.current_thread():
            thread.join(timeout=timeout_s)

    @property
    def closed(self) -> bool:
        return self._closing

    def lateness_stats(self) -> dict[str, int]:
        """p50/p99/max lateness in ns of the last `lateness_capacity` timed sends, and their total count."""
        count = self._lateness_count
        samples = sorted(self._lateness_ns[: min(count, len(self._lateness_ns))])
        if not samples:
            return {"p50_ns": 0, "p99_ns": 0, "max_ns": 0, "count": 0}
        n = len(samples)
        return {"p50_ns": samples[(n - 1) // 2], "p99_ns": samples[min(n - 1, (99 * n) // 100)],
                "max_ns": samples[-1], "count": count}

    def planned(self) -> list[tuple[Note, str]]:
        """The note-ons queued and not yet played (stopped ones left out), with their tags, for the UI.

        Any thread: it copies the queue in one step under the interpreter lock, so the scheduler thread never
        waits for a reader and nothing is sent later for it.
        """
        entries, stopped = list(self._heap), dict(self._stopped)
        planned: list[tuple[Note, str]] = []
        for ticks, kind, _, payload in entries:
            if kind == _ON:
                note, tag = payload[0], payload[1]
                cut = stopped.get(tag)
                if cut is None or ticks < cut:
                    planned.append((note, tag))
        return planned

    def sounding(self) -> list[tuple[int, int]]:
        """(channel, pitch) keys we sent a note-on for and no note-off yet."""
        with self._direct_lock:
            return self._ledger.sounding()

    # --- the thread ------------------------------------------------------------------------------------

    def _command(self, command: tuple[Any, ...]) -> None:
        with self._cond:
            if self._closing:
                return
            self._inbox.append(command)
            self._cond.notify()
            running = self._thread is not None and self._thread.is_alive()
        if not running and (self._thread is not None or command[0] == "panic"):
            # No thread (never started, or it died): nobody else writes, so do it here.
            self._direct(self._drain)

    def _direct(self, work: Callable[[], object]) -> None:
        with self._direct_lock:
            work()

    def _run(self) -> None:
        self.realtime_problem = try_realtime(self._realtime_priority)
        try:
            while True:
                with self._direct_lock:
                    next_ns = self.step(self._now_ns())
                with self._cond:
                    if self._closing and not self._inbox:
                        return
                    if self._inbox:
                        continue
                    now_ns = self._now_ns()
                    if next_ns is None or next_ns - now_ns > SPIN_NS:
                        wait_ns = MAX_WAIT_NS if next_ns is None else next_ns - SPIN_NS - now_ns
                        wait_ns = min(MAX_WAIT_NS, wait_ns)
                        self._cond.wait(wait_ns / 1e9)
                        continue
                while self._now_ns() < next_ns:
                    time.sleep(0)  # spin, letting rtmidi/JACK threads take the GIL
        except BaseException as err:
            if self._on_error is not None:
                self._on_error(err)
            else:
                raise
        finally:
            with self._direct_lock:
                self._release_all()

    def step(self, now_ns: int) -> int | None:
        """Apply queued commands, send all that is due at `now_ns`; return the next deadline ns or None."""
        self._at_ticks = self._due_ns = None
        self._drain()
        epoch = getattr(self._clock, "epoch", 0)
        if epoch != self._epoch:
            # The clock jumped (DAW start, relocation): plans on the old grid are void.
            self._epoch = epoch
            self.counts["dropped_on_jump"] += sum(1 for entry in self._heap if entry[1] == _ON)
            self._heap.clear()
            self._release_all()
        timebase = self._clock.timebase()
        heap = self._heap
        timed = self._send_at is not None and self._timed()
        while heap:
            ticks, kind, _, payload = heap[0]
            due_ns = timebase.ns_at(ticks)
            deadline_ns = due_ns if timed else due_ns - self._send_ahead_ns
            hand_ns = due_ns - self._hand_ahead_ns if timed else deadline_ns
            if hand_ns > now_ns:
                return hand_ns
            heapq.heappop(heap)
            self._at_ticks = ticks
            self._due_ns = due_ns if timed else None
            late_ns = max(0, now_ns - deadline_ns) if timed else now_ns - deadline_ns  # handed over early: on time
            if kind == _OFF:
                channel, pitch, note_id = payload
                owner = self._owner.get((channel, pitch))
                if owner is not None and owner[0] == note_id:  # else it was re-struck or stopped already
                    self._note_off(channel, pitch)
                    self._record(late_ns)
            else:
                self._play(payload, ticks, late_ns, now_ns)
            self._at_ticks = self._due_ns = None
        return None

    def _play(self, payload: tuple[Note, str, int], ticks: int, late_ns: int, now_ns: int) -> None:
        note, tag, note_id = payload
        stopped = self._stopped.get(tag)
        if stopped is not None and ticks >= stopped:
            self.counts["cancelled"] += 1
            return
        if late_ns > self._late_tolerance_ns:
            self.counts["skipped_late"] += 1
            return
        velocity = note.velocity
        ducked = self._ducked.get(tag)
        if ducked is not None and ticks >= ducked:
            velocity = max(1, round(velocity * self._duck_factor))
        key = (note.channel, note.pitch)
        if key in self._owner:
            self.counts["retriggered"] += 1
            self._note_off(*key)
        self._send_note([0x90 | note.channel, note.pitch, velocity])
        self._record(late_ns)
        self._sounding_on(key, note_id, tag)
        self._push(note.end_ticks, _OFF, (note.channel, note.pitch, note_id))

    def _drain(self) -> None:
        inbox = self._inbox
        while inbox:
            command = inbox.popleft()
            name = command[0]
            if name == "submit":
                for note in command[1]:
                    self._push(note.start_ticks, _ON, (note, command[2], self._seq))
            elif name == "cancel":
                self._cancel(command[1], command[2], command[3])
            elif name == "now":
                self._send_message(command[1], command[2])
            elif name == "panic":
                self.counts["cancelled"] += sum(1 for entry in self._heap if entry[1] == _ON)
                self._heap.clear()
                self._release_all()
                for channel in sorted(self._channels_used):
                    self._send([0xB0 | channel, CC_ALL_NOTES_OFF, 0])

    def _cancel(self, tag: str, from_ticks: int, how: str) -> None:
        marks = self._stopped if how == "stop" else self._ducked
        marks[tag] = min(from_ticks, marks.get(tag, from_ticks))
        if len(marks) > _MAX_CANCEL_MARKS:
            del marks[next(iter(marks))]
        if how == "stop":
            for key in [k for k, (_, owner_tag) in self._owner.items() if owner_tag == tag]:
                self._note_off(*key)

    def _send_message(self, message: ChannelMessage, tag: str) -> None:
        if isinstance(message, NoteOn):
            key = (message.channel, message.note)
            if key in self._owner:
                self._note_off(*key)
            self._send_note(encode(message))
            self._sounding_on(key, self._seq, tag)
            self._seq += 1
            return
        if isinstance(message, NoteOff):
            key = (message.channel, message.note)
            if key in self._owner:
                self._note_off(*key, velocity=message.velocity)
            return  # a note-off for a note we did not sound is not sent (the synth has nothing to end)
        self._send(encode(message))
        if isinstance(message, ControlChange | PitchBend):
            with self._direct_lock:
                self._ledger.controller(message)  # a pedal or bend passed on is set back when notes are ended
        if isinstance(message, ControlChange) and message.control in (CC_ALL_NOTES_OFF, CC_ALL_SOUND_OFF):
            with self._direct_lock:
                for off in self._ledger.release_channel(message.channel):
                    self._owner.pop((off.channel, off.note), None)

    # --- the ledger --------------------------------------------------------------------------------------

    def _push(self, ticks: int, kind: int, payload: Any) -> None:
        heapq.heappush(self._heap, (ticks, kind, self._seq, payload))
        self._seq += 1

    def _sounding_on(self, key: tuple[int, int], note_id: int, tag: str) -> None:
        with self._direct_lock:
            self._ledger.on(*key)
        self._owner[key] = (note_id, tag)
        self._channels_used.add(key[0])
        self.counts["note_on"] += 1

    def _send_note(self, data: list[int]) -> None:
        if self._due_ns is not None and self._send_at is not None:  # only set while the outputs are timed
            self._send_at(data, self._due_ns)
        else:
            self._send(data)
        if self._on_note is not None:
            ticks = self._at_ticks
            self._on_note(data, ticks if ticks is not None else self._clock.timebase().ticks_at(self._now_ns()))

    def _note_off(self, channel: int, pitch: int, velocity: int = 0) -> None:
        self._send_note([0x80 | channel, pitch, velocity])
        with self._direct_lock:
            self._ledger.off_all_voices(channel, pitch)
        self._owner.pop((channel, pitch), None)
        self.counts["note_off"] += 1

    def _release_all(self) -> None:
        """One note-off per sounding key, then every held controller back to rest (pedals up, bend centred);
        keeps going if a send fails so the rest still get theirs."""
        failure: BaseException | None = None
        with self._direct_lock:
            offs: Sequence[NoteOff] = self._ledger.release_all()
            resets = self._ledger.release_controllers()
        self._owner.clear()
        for data in [[0x80 | off.channel, off.note, 0] for off in offs] + [encode(reset) for reset in resets]:
            try:
                if data[0] & 0xF0 == 0x80:
                    self._send_note(data)
                    self.counts["note_off"] += 1
                else:
                    self._send(data)
            except Exception as err:  # noqa: BLE001 - the other keys must still be released; re-raised below
                failure = failure or err
        if failure is not None:
            raise failure

    def _record(self, late_ns: int) -> None:
        ring = self._lateness_ns
        ring[self._lateness_count % len(ring)] = late_ns
        self._lateness_count += 1


def sleep_until_ns(deadline_ns: int, now_ns: Callable[[], int] = time.monotonic_ns) -> None:
    """Block until an absolute monotonic deadline: a coarse sleep, then a short spin (for bench and demo)."""
    remaining = deadline_ns - now_ns()
    if remaining > SPIN_NS:
        time.sleep((remaining - SPIN_NS) / 1e9)
    while now_ns() < deadline_ns:
        time.sleep(0)
