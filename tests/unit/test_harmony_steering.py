"""Steering the harmony worker: the left hand's chord and the key reach the models before the melody note,
and a left-hand chord just after the note re-voices it."""

from __future__ import annotations

from pathlib import Path

from harmony_fakes import FakeHarmonizer, RecordingSend, chorale, run, tiny, worker_for

from companion.core.engine import Engine, EngineSettings
from companion.core.events import (
    PPQ,
    HarmonizeNote,
    HarmonyCommand,
    HarmonyStep,
    NoteOff,
    NoteOn,
    ReleaseHarmony,
    StopHarmony,
)
from companion.core.modes.harmonize import RevoiceNote, SteerHarmony

# --- steering: the left hand's chord and the key reach the models before the melody note -----------------------


def steer(chord: frozenset[int] | None, key: frozenset[int] | None = None, step: int = 0) -> SteerHarmony:
    return SteerHarmony(step, -1, False, False, key, chord, EngineSettings(mode="harmonize"))


def test_a_steering_change_rebuilds_the_chords_before_the_note_so_the_note_is_a_lookup() -> None:
    fakes = [FakeHarmonizer(chorale) for _ in range(4)]
    worker = worker_for(RecordingSend(), lambda: fakes)
    settings = EngineSettings(mode="harmonize")
    c_triad, f_triad = frozenset({0, 4, 7}), frozenset({5, 9, 0})
    worker.process(steer(c_triad))  # between phrases: every primed model takes it and rebuilds its chords
    assert all(f.prepared == [c_triad] and f.fresh for f in fakes)
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, None, c_triad, settings))
    [used] = [f for f in fakes if f.sopranos]
    worker.process(steer(f_triad, step=0))  # the left hand moves on during the phrase
    assert used.prepared[-1] == f_triad and used.fresh
    worker.process(HarmonizeNote(72, 100, 0, PPQ, 4, True, None, f_triad, settings))
    assert getattr(used, "stale_steps", 0) == 0  # no note found its chords stale
    worker.process(HarmonizeNote(74, 100, 0, 2 * PPQ, 8, True, None, c_triad, settings))  # not announced
    assert used.stale_steps == 1  # that one note takes the slow path; nothing is lost


def test_a_waiting_note_interrupts_the_rebuild_and_the_idle_thread_finishes_it(tiny_checkpoint: Path) -> None:
    send = RecordingSend()
    worker = worker_for(send, tiny(tiny_checkpoint))
    settings = EngineSettings(mode="harmonize", temperature=3.0)
    c_triad = frozenset({0, 4, 7})
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, settings=settings))
    model = worker._models.active
    worker.submit(HarmonizeNote(76, 100, 0, PPQ, 4, True, None, c_triad, settings))  # waiting behind the steer
    worker.process(steer(c_triad))
    assert model is not None and model.key_lock is None  # a note waits: nothing is done before it
    worker.process(*worker._inbox.get())  # the note, on the one-soprano path: it did not wait for the table
    assert send.sounding and all(p % 12 in c_triad for _, p in send.sounding)
    while worker.work_when_idle():  # the thread, idle again
        pass
    assert all(m.key_lock is None for m in worker._models.primed())  # not needed before the phrase ends
    worker.process(steer(frozenset({2, 7, 11})))  # nothing waits now: the table is rebuilt at once
    assert model.key_lock == {2, 7, 11} and model._table_fresh(True)  # type: ignore[attr-defined]
    worker.process(StopHarmony(2 * PPQ, "rest"))
    while worker.work_when_idle():  # between phrases the primed models take the steering
        pass
    assert all(m.key_lock == {2, 7, 11} and m._table_fresh(True) for m in worker._models.primed())  # type: ignore


# --- a left-hand chord just after the melody note -------------------------------------------------------------


def test_a_late_left_hand_chord_re_voices_the_note_with_note_offs_for_the_voices_that_change() -> None:
    fake = FakeHarmonizer(lambda s, n: (67, 64, 48) if fake.key_lock is None else (69, 65, 53))
    send = RecordingSend()  # fails on a note struck twice or a note-off for a note not sounding
    worker = worker_for(send, lambda: [fake])
    settings = EngineSettings(mode="harmonize", chord_channel=1)
    f_major = frozenset({5, 9, 0})
    worker.process(HarmonizeNote(72, 100, 0, PPQ, 4, True, settings=settings))
    assert send.sounding == {(0, 67), (0, 64), (0, 48)}
    send.messages.clear()
    worker.process(RevoiceNote(72, 100, 0, PPQ + 10, 4, True, None, f_major, settings))
    assert send.sounding == {(0, 69), (0, 65), (0, 53)} and fake.redone == 1 and fake.sopranos == [72]
    kinds = [type(m).__name__ for m, _ in send.messages]
    assert kinds == ["NoteOn"] * 3 + ["NoteOff"] * 3  # the new chord first, then the old one's note-offs
    assert worker.counts["revoiced"] == 1 and fake.finished == 2  # the step taken again is fed back again
    worker.process(ReleaseHarmony(72, PPQ + 100))
    assert send.sounding == set()  # nothing left sounding


def test_a_late_chord_after_the_model_moved_on_or_with_a_command_waiting_only_steers() -> None:
    fake = FakeHarmonizer(chorale)
    send = RecordingSend()
    worker = worker_for(send, lambda: [fake])
    settings = EngineSettings(mode="harmonize", chord_channel=1)
    c_triad = frozenset({0, 4, 7})
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, settings=settings))
    worker.process(HarmonyStep(1, 72, True, False, settings=settings))  # a step passed since the note
    worker.process(RevoiceNote(72, 100, 0, 130, 0, True, None, c_triad, settings))
    assert getattr(fake, "redone", 0) == 0 and fake.key_lock == c_triad and fake.prepared == [c_triad]
    worker.submit(ReleaseHarmony(72, 140))  # waiting: the next note of the chord would re-voice
    worker.process(RevoiceNote(72, 100, 0, 135, 1, True, None, frozenset({2}), settings))
    assert getattr(fake, "redone", 0) == 0 and len(send.sounding) == 3


def test_hands_together_with_the_left_hand_late_through_the_engine(tiny_checkpoint: Path) -> None:
    send = RecordingSend()
    worker = worker_for(send, tiny(tiny_checkpoint))
    settings = EngineSettings(mode="harmonize", chord_channel=1, temperature=3.0, harmony_channels=(2, 3, 4))
    engine = Engine(settings)
    c_major = {0, 4, 7}
    events = [(PPQ, NoteOn(0, 72, 100))] + [(PPQ + 15 + i, NoteOn(1, p, 90)) for i, p in enumerate((48, 52, 55))]
    events += [(2 * PPQ - 10, NoteOff(0, 72))] + [(2 * PPQ, NoteOff(1, p)) for p in (48, 52, 55)]
    heard_after_chord: set[int] = set()
    for now in range(0, 3 * PPQ, 5):
        for _, message in [e for e in events if now - 5 < e[0] <= now]:
            run(worker, [c for c in engine.handle(message, now) if isinstance(c, HarmonyCommand)])
        run(worker, [c for c in engine.tick(now) if isinstance(c, HarmonyCommand)])
        if PPQ + 20 <= now < 2 * PPQ - 10:
            heard_after_chord |= {p % 12 for _, p in send.sounding}
    assert worker.counts["revoiced"] >= 1 and heard_after_chord and heard_after_chord <= c_major
    assert send.sounding == set() and worker.counts["errors"] == 0


def test_a_note_that_comes_before_the_chords_for_a_new_left_hand_chord_gets_that_chord_at_once() -> None:
    """The left hand takes a chord a moment before the melody note, too soon for the model's chords to be
    rebuilt: the note is voiced on the held chord straight away (no model pass on the note's path), and the
    model takes the step after the send, so the next note finds its chords ready again."""
    fakes = [FakeHarmonizer(lambda soprano, step: (67, 64, 48)) for _ in range(4)]
    send = RecordingSend()
    worker = worker_for(send, lambda: fakes)
    settings = EngineSettings(mode="harmonize")
    g_triad = frozenset({7, 11, 2})
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, None, None, settings))
    [model] = [f for f in fakes if f.sopranos]
    model.set_key_lock(g_triad)  # as a steer half done: the chords are stale when the note comes
    worker.process(HarmonizeNote(74, 100, 0, PPQ // 4, 1, True, None, g_triad, settings))  # the next 16th
    assert worker.counts["quick"] == 1
    sounding = sorted(p for _, p in send.sounding)
    assert len(sounding) == 3 and all(p % 12 in g_triad for p in sounding) and max(sounding) < 74
    assert sounding[0] % 12 == 7  # the bass on the chord's root
    assert model.sopranos == [72, 74] and model.finished == 2  # the model heard the note, after the send
    worker.process(HarmonizeNote(76, 100, 0, PPQ // 2, 2, True, None, g_triad, settings))
    assert worker.counts["quick"] == 1  # ready again: the model's own chord


def test_the_quick_voicing_keeps_each_voice_in_its_range_under_the_melody_and_near_where_it_was() -> None:
    from companion.harmony.voicing import chord_voices

    ranges = [(60, 81), (52, 74), (46, 69), (36, 66)]
    d7 = frozenset({2, 6, 9, 0})
    alto, tenor, bass = chord_voices(76, d7, (67, 62, 43), ranges)
    assert bass is not None and bass % 12 == 2 and abs(bass - 43) <= 6
    assert alto is not None and tenor is not None and bass < tenor < alto < 76
    assert {alto % 12, tenor % 12} <= d7 and len({alto % 12, tenor % 12, bass % 12, 76 % 12}) >= 3
    for pitch, (lo, hi) in zip((alto, tenor, bass), ranges[1:], strict=True):
        assert lo <= pitch <= hi
    low = chord_voices(60, frozenset({5, 9, 0}), None, ranges)  # a low melody: voices under it where they fit
    assert len(set(low)) == 3 and all(p is not None and p < 60 for p in low)
    assert chord_voices(72, frozenset(), None, ranges) == (None, None, None)


def test_a_waiting_note_stops_the_next_chords_being_built_and_is_served_first(tiny_checkpoint: Path) -> None:
    """After a note's send the model builds the next step's chords; a note that comes meanwhile does not wait for
    the whole table: the build stops before its next pass, the note finishes its own row, and the rest of the
    work is done when the thread is idle again."""
    send = RecordingSend()
    worker = worker_for(send, tiny(tiny_checkpoint))
    settings = EngineSettings(mode="harmonize")
    worker.submit(HarmonizeNote(74, 100, 0, PPQ // 4, 1, True, settings=settings))  # waiting during the build
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, settings=settings))
    model = worker._models.active
    assert model is not None and not model.chords_ready()  # the build stopped for the waiting note
    assert worker._models.needs_work()
    worker.process(*worker._inbox.get())  # the note: its own row, no whole table first
    assert worker.counts["errors"] == 0 and len(send.note_ons()) >= 4 and send.sounding
    while worker.work_when_idle():
        pass
    assert model.chords_ready()  # built after the note, when nothing waited
