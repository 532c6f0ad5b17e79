"""The scheduler with a timed output (our JACK client): planned notes are handed over ahead with the time they are
due, so a late wake-up costs nothing; immediate sends stay immediate; without a timed output nothing changes."""

from __future__ import annotations

from companion.core.events import PPQ, Note, NoteOn
from companion.core.timebase import Timebase
from companion.live.scheduler import Scheduler

MS = 1_000_000
AHEAD = 25 * MS  # 500 ms per beat at 120 BPM: tick PPQ is due at 500 ms


class Clock:
    epoch = 0

    def timebase(self) -> Timebase:
        return Timebase(120.0, origin_ns=0)


def make(timed: bool = True) -> tuple[Scheduler, list, list]:
    now_sent: list[list[int]] = []
    timed_sent: list[tuple[list[int], int]] = []
    scheduler = Scheduler(now_sent.append, Clock(), realtime_priority=None, send_ahead_ns=3 * MS,
                          send_at=lambda data, due: timed_sent.append((list(data), due)), hand_ahead_ns=AHEAD,
                          timed=lambda: timed)
    return scheduler, now_sent, timed_sent


def test_a_planned_note_is_handed_over_ahead_with_the_time_it_is_due() -> None:
    scheduler, now_sent, timed_sent = make()
    scheduler.submit([Note(60, 90, PPQ, PPQ // 2)], "answer")
    assert scheduler.step(400 * MS) == 500 * MS - AHEAD  # the thread next wakes when it is to be handed over
    assert scheduler.step(476 * MS) == 750 * MS - AHEAD
    assert timed_sent == [([0x90, 60, 90], 500 * MS)]  # its own due time, not when it was handed over
    scheduler.step(730 * MS)
    assert timed_sent[-1] == ([0x80, 60, 0], 750 * MS)
    assert now_sent == [] and scheduler.lateness_stats()["max_ns"] == 0


def test_a_thread_woken_late_hands_over_with_the_due_time_and_the_lateness_is_counted() -> None:
    scheduler, _, timed_sent = make()
    scheduler.submit([Note(62, 90, PPQ, PPQ)], "answer")
    scheduler.step(508 * MS)
    assert timed_sent == [([0x90, 62, 90], 500 * MS)]  # the output writes it at once and counts it late
    assert scheduler.lateness_stats()["max_ns"] == 8 * MS


def test_immediate_sends_and_stops_go_now_and_end_handed_over_notes() -> None:
    scheduler, now_sent, timed_sent = make()
    scheduler.submit([Note(64, 90, PPQ, PPQ)], "answer")
    scheduler.step(480 * MS)  # handed over, due at 500 ms
    scheduler.send_now(NoteOn(0, 48, 70), "harmony")
    assert now_sent == [[0x90, 48, 70]]
    scheduler.cancel("answer", 0)
    scheduler.step(481 * MS)
    # the stop's note-off goes now: the timed output drops the pending note-on it meets (it never sounds)
    assert now_sent[-1] == [0x80, 64, 0] and scheduler.sounding() == [(0, 48)]
    assert [data for data, _ in timed_sent] == [[0x90, 64, 90]]


def test_without_a_timed_output_notes_go_at_their_deadline_as_before() -> None:
    scheduler, now_sent, timed_sent = make(timed=False)
    scheduler.submit([Note(60, 90, PPQ, PPQ // 2)], "answer")
    assert scheduler.step(480 * MS) == 497 * MS  # send_ahead only (rtmidi's JACK: half a period)
    scheduler.step(497 * MS)
    assert now_sent == [[0x90, 60, 90]] and timed_sent == []
