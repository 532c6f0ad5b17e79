"""Scheduler: deadlines from the clock, the ledger (every note-on gets its off), cancel, panic, lateness."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.core.events import PPQ, ControlChange, Note, NoteOff, NoteOn, PitchBend
from companion.core.timebase import Timebase
from companion.live.scheduler import LATE_TOLERANCE_NS, Scheduler

BEAT_NS = 500_000_000  # 120 BPM


class FakeClock:
    """A clock whose timebase the test sets; `epoch` bumps on a jump, as the real clocks do."""

    def __init__(self, bpm: float = 120.0) -> None:
        self.tb = Timebase(bpm, origin_ns=0)
        self.epoch = 0

    def timebase(self) -> Timebase:
        return self.tb


class RecordingSend:
    """Keeps every message sent, optionally failing on one."""

    def __init__(self, fail_on: list[int] | None = None) -> None:
        self.sent: list[list[int]] = []
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, data: list[int]) -> None:
        if data == self.fail_on:
            raise OSError("port went away")
        with self.lock:
            self.sent.append(list(data))

    def sounding(self) -> set[tuple[int, int]]:
        """Keys whose last message on the wire was a note-on (what a synth would be playing)."""
        keys: set[tuple[int, int]] = set()
        with self.lock:
            for data in self.sent:
                kind, channel = data[0] & 0xF0, data[0] & 0x0F
                if kind == 0x90 and data[2] > 0:
                    keys.add((channel, data[1]))
                elif kind in (0x80, 0x90):
                    keys.discard((channel, data[1]))
                elif kind == 0xB0 and data[1] in (120, 123):
                    keys = {k for k in keys if k[0] != channel}
        return keys


def make() -> tuple[Scheduler, FakeClock, RecordingSend]:
    clock, send = FakeClock(), RecordingSend()
    return Scheduler(send, clock), clock, send


def test_notes_go_out_at_their_deadlines_with_their_note_offs() -> None:
    scheduler, clock, send = make()
    scheduler.submit([Note(60, 100, PPQ, PPQ // 2)], "answer")
    assert scheduler.step(0) == BEAT_NS  # nothing due yet: the next deadline is beat 2
    assert send.sent == []
    assert scheduler.step(BEAT_NS - 1) == BEAT_NS
    assert scheduler.step(BEAT_NS) == BEAT_NS + BEAT_NS // 2
    assert send.sent == [[0x90, 60, 100]]
    assert scheduler.sounding() == [(0, 60)]
    assert scheduler.step(BEAT_NS + BEAT_NS // 2) is None
    assert send.sent == [[0x90, 60, 100], [0x80, 60, 0]]
    assert scheduler.sounding() == []


def test_tempo_change_moves_pending_notes() -> None:
    scheduler, clock, send = make()
    scheduler.submit([Note(62, 90, 2 * PPQ, PPQ)], "a")
    assert scheduler.step(0) == 2 * BEAT_NS
    clock.tb = clock.tb.with_tempo(60.0, at_ns=BEAT_NS // 2)  # half speed from a half beat in
    assert scheduler.step(BEAT_NS) == BEAT_NS // 2 + 3 * BEAT_NS  # 1.5 beats left, at 1 s per beat
    assert send.sent == []


def test_send_ahead_moves_every_deadline_earlier() -> None:
    clock, send = FakeClock(), RecordingSend()
    scheduler = Scheduler(send, clock, send_ahead_ns=700_000)
    scheduler.submit([Note(60, 100, PPQ, PPQ)], "a")
    assert scheduler.step(0) == BEAT_NS - 700_000
    scheduler.step(BEAT_NS - 700_000)
    assert send.sent == [[0x90, 60, 100]] and scheduler.lateness_stats()["max_ns"] == 0


def test_a_late_note_within_tolerance_plays_beyond_it_is_skipped_without_note_off() -> None:
    scheduler, clock, send = make()
    scheduler.submit([Note(60, 80, 0, PPQ), Note(64, 80, 0, 2 * PPQ)], "a")
    scheduler.step(LATE_TOLERANCE_NS // 2)
    assert send.sent == [[0x90, 60, 80], [0x90, 64, 80]]
    scheduler.submit([Note(67, 80, 0, PPQ)], "b")  # arrives long after its start
    scheduler.step(LATE_TOLERANCE_NS * 3)
    assert scheduler.counts["skipped_late"] == 1
    scheduler.step(3 * BEAT_NS)
    assert [0x90, 67, 80] not in send.sent and [0x80, 67, 0] not in send.sent
    assert send.sent[-2:] == [[0x80, 60, 0], [0x80, 64, 0]]
    stats = scheduler.lateness_stats()
    assert stats["count"] == 4 and stats["max_ns"] == 2 * BEAT_NS  # the 60 off, stepped 2 beats late


def test_a_new_note_on_a_sounding_key_closes_the_old_one_first() -> None:
    scheduler, clock, send = make()
    scheduler.submit([Note(60, 80, 0, 2 * PPQ), Note(60, 90, PPQ, 2 * PPQ)], "a")
    scheduler.step(0)
    scheduler.step(BEAT_NS)
    assert send.sent == [[0x90, 60, 80], [0x80, 60, 0], [0x90, 60, 90]]
    scheduler.step(2 * BEAT_NS)  # the first note's end must not cut the second
    assert send.sent[-1] == [0x90, 60, 90] and scheduler.sounding() == [(0, 60)]
    scheduler.step(3 * BEAT_NS)
    assert send.sent[-1] == [0x80, 60, 0] and scheduler.counts["retriggered"] == 1


def test_cancel_stop_ends_sounding_notes_now_and_drops_later_ones() -> None:
    scheduler, clock, send = make()
    scheduler.submit([Note(60 + i, 80, i * PPQ, 4 * PPQ) for i in range(4)], "answer")
    scheduler.submit([Note(48, 70, 0, 8 * PPQ)], "other")
    scheduler.step(0)
    scheduler.step(BEAT_NS)  # 60, 61 and 48 are sounding
    scheduler.cancel("answer", from_ticks=PPQ * 3 // 2)
    scheduler.submit([Note(70, 80, 3 * PPQ, PPQ)], "answer")  # streamed in after the cancel
    scheduler.step(BEAT_NS + 1)
    assert send.sent[-2:] == [[0x80, 60, 0], [0x80, 61, 0]]
    scheduler.step(6 * BEAT_NS)
    assert scheduler.sounding() == [(0, 48)]
    assert not any(d[0] == 0x90 and d[1] in (62, 63, 70) for d in send.sent)
    assert scheduler.counts["cancelled"] == 3


def test_planned_lists_queued_note_ons_until_they_play_or_are_stopped() -> None:
    scheduler, clock, send = make()
    notes = [Note(60 + i, 80, i * PPQ, PPQ // 2) for i in range(4)]
    scheduler.submit(notes, "answer")
    scheduler.submit([Note(48, 70, 2 * PPQ, PPQ)], "other")
    scheduler.step(0)  # the first note plays: it is sounding, no longer planned
    planned = sorted(scheduler.planned(), key=lambda item: (item[0].start_ticks, item[0].pitch))
    assert planned == [(notes[1], "answer"), (Note(48, 70, 2 * PPQ, PPQ), "other"), (notes[2], "answer"),
                       (notes[3], "answer")]
    scheduler.cancel("answer", from_ticks=2 * PPQ)
    scheduler.step(1)
    assert sorted(n.pitch for n, _ in scheduler.planned()) == [48, 61]  # the stopped part is not shown
    scheduler.step(2 * BEAT_NS)
    assert scheduler.planned() == []
    scheduler.submit(notes, "again")
    scheduler.panic()
    scheduler.step(2 * BEAT_NS + 1)
    assert scheduler.planned() == []


def test_cancel_duck_plays_the_rest_softer() -> None:
    scheduler, clock, send = make()
    scheduler.submit([Note(60, 100, 0, PPQ), Note(62, 100, PPQ, PPQ), Note(64, 100, 2 * PPQ, PPQ)], "answer")
    scheduler.step(0)
    scheduler.cancel("answer", from_ticks=PPQ, how="duck")
    scheduler.step(BEAT_NS)
    scheduler.step(2 * BEAT_NS)
    assert [d for d in send.sent if d[0] == 0x90] == [[0x90, 60, 100], [0x90, 62, 40], [0x90, 64, 40]]
    with pytest.raises(ValueError, match="'fade'"):
        scheduler.cancel("answer", 0, how="fade")


def test_send_now_goes_through_the_ledger_and_panic_closes_everything() -> None:
    scheduler, clock, send = make()
    scheduler.send_now(NoteOn(0, 60, 100))
    scheduler.send_now(NoteOn(3, 40, 100))
    scheduler.send_now(ControlChange(0, 1, 64))
    scheduler.send_now(NoteOff(5, 99))  # nothing sounding there: not sent
    scheduler.submit([Note(72, 80, 4 * PPQ, PPQ)], "answer")
    scheduler.step(0)
    assert send.sent == [[0x90, 60, 100], [0x93, 40, 100], [0xB0, 1, 64]]
    scheduler.panic()
    scheduler.step(1)
    # note-offs, the mod wheel passed on set back to rest, then All Notes Off on every channel used
    assert send.sent[3:] == [[0x80, 60, 0], [0x83, 40, 0], [0xB0, 1, 0], [0xB0, 123, 0], [0xB3, 123, 0]]
    scheduler.step(10 * BEAT_NS)  # the pending answer was dropped by the panic
    assert len(send.sent) == 8 and send.sounding() == set()


@pytest.mark.parametrize("end", ["panic", "close"])
def test_pedals_and_bends_passed_on_are_set_back_whenever_notes_are_ended(end: str) -> None:
    scheduler, clock, send = make()
    for message in (ControlChange(0, 64, 127), ControlChange(0, 66, 100), ControlChange(2, 67, 1),
                    ControlChange(0, 1, 90), PitchBend(2, -4000), ControlChange(0, 7, 90),  # volume: not held
                    ControlChange(1, 64, 127), ControlChange(1, 64, 0)):  # pedal down and up again: at rest
        scheduler.send_now(message)
    scheduler.send_now(NoteOn(0, 60, 100))
    sent_before = len(send.sent)
    scheduler.panic() if end == "panic" else scheduler.close()
    scheduler.step(1)
    resets = [data for data in send.sent[sent_before:] if data[0] & 0xF0 in (0xB0, 0xE0) and data[1] != 123]
    assert resets == [[0xB0, 1, 0], [0xB0, 64, 0], [0xB0, 66, 0], [0xE2, 0, 64], [0xB2, 67, 0]]
    assert send.sent[sent_before] == [0x80, 60, 0]  # the note-off before the pedal goes up
    scheduler.panic()
    scheduler.step(2)
    assert not [d for d in send.sent[sent_before + 6:] if d[0] & 0xF0 == 0xE0 or d[1] in (1, 64, 66, 67)], \
        "a second panic has nothing left to set back"


def test_incoming_all_notes_off_forgets_that_channel() -> None:
    scheduler, clock, send = make()
    scheduler.submit([Note(60, 80, 0, PPQ, channel=2)], "a")
    scheduler.step(0)
    scheduler.send_now(ControlChange(2, 123, 0))
    scheduler.step(1)
    assert scheduler.sounding() == []
    scheduler.step(BEAT_NS)
    assert send.sent == [[0x92, 60, 80], [0xB2, 123, 0]]


def test_a_clock_jump_releases_sounding_notes_and_drops_the_old_plan() -> None:
    scheduler, clock, send = make()
    scheduler.submit([Note(60, 80, 0, 4 * PPQ), Note(62, 80, 2 * PPQ, PPQ)], "a")
    scheduler.step(0)
    clock.tb, clock.epoch = clock.tb.with_position(0, BEAT_NS), 1  # the DAW pressed Start
    scheduler.step(BEAT_NS)
    assert send.sent == [[0x90, 60, 80], [0x80, 60, 0]]
    assert scheduler.counts["dropped_on_jump"] == 1
    assert scheduler.step(10 * BEAT_NS) is None and len(send.sent) == 2


def test_bad_notes_and_messages_are_refused_in_the_callers_thread() -> None:
    scheduler, _, _ = make()
    with pytest.raises(ValueError, match="tag 'a'"):
        scheduler.submit([Note(128, 80, 0, 10)], "a")
    with pytest.raises(ValueError, match="velocity"):
        scheduler.send_now(NoteOn(0, 60, 200))


def test_lateness_stats_percentiles() -> None:
    scheduler, clock, send = make()
    scheduler.submit([Note(20 + i, 80, i * PPQ, 200 * PPQ) for i in range(100)], "a")
    for i in range(100):
        scheduler.step(i * BEAT_NS + i * 1000)  # the i-th note goes i microseconds late
    stats = scheduler.lateness_stats()
    assert stats == {"p50_ns": 49_000, "p99_ns": 99_000, "max_ns": 99_000, "count": 100}


notes_strategy = st.builds(
    Note, pitch=st.integers(58, 62), velocity=st.integers(1, 127), start_ticks=st.integers(0, 8 * PPQ),
    duration_ticks=st.integers(0, 4 * PPQ), channel=st.integers(0, 1))
action = st.one_of(
    st.tuples(st.just("submit"), st.lists(notes_strategy, max_size=4), st.sampled_from(["a", "b"])),
    st.tuples(st.just("cancel"), st.sampled_from(["a", "b"]), st.integers(0, 8 * PPQ),
              st.sampled_from(["stop", "duck"])),
    st.tuples(st.just("thru"), st.integers(58, 62), st.booleans()),
    st.tuples(st.just("step"), st.integers(0, 2 * BEAT_NS)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(action, max_size=30), st.booleans())
def test_after_any_sequence_and_close_nothing_is_left_sounding(actions: list[tuple],
                                                               panic_first: bool) -> None:
    scheduler, clock, send = make()
    now_ns = 0
    for act in actions:
        if act[0] == "submit":
            scheduler.submit(act[1], act[2])
        elif act[0] == "cancel":
            scheduler.cancel(act[1], act[2], act[3])
        elif act[0] == "thru":
            scheduler.send_now(NoteOn(0, act[1], 90) if act[2] else NoteOff(0, act[1]))
        else:
            now_ns += act[1]
            scheduler.step(now_ns)
        assert send.sounding() == set(scheduler.sounding())  # the ledger matches the wire at every step
    if panic_first:
        scheduler.panic()
    scheduler.close()
    assert send.sounding() == set() and scheduler.sounding() == []


def test_close_is_idempotent_and_closes_sounding_notes_from_the_thread() -> None:
    clock, send = FakeClock(), RecordingSend()
    clock.tb = Timebase(120.0, origin_ns=time.monotonic_ns())
    scheduler = Scheduler(send, clock).start()
    scheduler.submit([Note(60, 80, 0, 100 * PPQ, channel=1)], "a")
    deadline = time.monotonic() + 5
    while not scheduler.sounding() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert scheduler.sounding() == [(1, 60)]
    scheduler.close()
    scheduler.close()
    assert send.sent == [[0x91, 60, 80], [0x81, 60, 0], [0xB1, 123, 0]]
    scheduler.submit([Note(61, 80, 0, 10)], "a")  # ignored after close
    assert scheduler.closed and len(send.sent) == 3


def test_threaded_sends_are_never_early_and_in_order() -> None:
    clock = FakeClock()
    clock.tb = Timebase(240.0, origin_ns=time.monotonic_ns() + 20_000_000)
    stamped: list[tuple[list[int], int]] = []
    scheduler = Scheduler(lambda d: stamped.append((d, time.monotonic_ns())), clock).start()
    notes = [Note(60 + i % 12, 80, i * 40, 20) for i in range(30)]
    scheduler.submit(notes, "a")
    deadline = time.monotonic() + 10
    while len(stamped) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    scheduler.close()
    ons = [(d, t) for d, t in stamped if d[0] == 0x90]
    assert [d[1] for d, _ in ons] == [n.pitch for n in notes]
    for (_, sent_ns), note in zip(ons, notes, strict=True):
        assert sent_ns >= clock.tb.ns_at(note.start_ticks)
    assert scheduler.lateness_stats()["count"] == 60


def test_an_exception_in_the_thread_ends_in_note_offs_and_is_reported() -> None:
    clock, send = FakeClock(), RecordingSend(fail_on=[0x90, 99, 80])
    clock.tb = Timebase(120.0, origin_ns=time.monotonic_ns())
    errors: list[BaseException] = []
    scheduler = Scheduler(send, clock, on_error=errors.append).start()
    scheduler.submit([Note(60, 80, 0, 100 * PPQ), Note(64, 80, 0, 100 * PPQ), Note(99, 80, 24, 10)], "a")
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(errors) == 1 and isinstance(errors[0], OSError)
    deadline = time.monotonic() + 5
    while send.sounding() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert send.sounding() == set() and scheduler.sounding() == []
    scheduler.close()  # still safe after the thread died
