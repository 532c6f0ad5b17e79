"""The harmony worker with a scripted model: model steps on the grid, voicing styles, held chords, phrases
primed per position in the beat, failures. Steering: test_harmony_steering.py; a real model:
test_harmony_tiny_model.py."""

from __future__ import annotations

import time

import pytest
from harmony_fakes import MELODY, FakeHarmonizer, RecordingSend, Voices, chorale, perform, run, worker_for

from companion.core.engine import EngineSettings
from companion.core.events import PPQ, HarmonizeNote, ReleaseHarmony, StopHarmony
from companion.core.modes.harmonize import HARMONY_TAG
from companion.harmony.voicing import clashes, voice_notes


def test_the_model_hears_the_melody_on_its_16th_steps_held_and_through_rests() -> None:
    fake = FakeHarmonizer(chorale)
    worker = worker_for(RecordingSend(), lambda: [fake])
    run(worker, perform(EngineSettings(mode="harmonize"), MELODY))
    # C for a beat, D for a beat, E for two, D for an 8th on beat 5 (tick 1920 = step 16), then C from step 18
    assert fake.sopranos[:20] == [72] * 4 + [74] * 4 + [76] * 8 + [74] * 2 + [72] * 2
    assert fake.finished == len(fake.sopranos)  # every step fed back to the model


def test_a_held_note_holds_the_chord_and_moves_only_on_the_beat() -> None:
    fake = FakeHarmonizer(lambda s, n: (50 + n, 40, 30))  # the model wants to move the alto every 16th
    send = RecordingSend()
    worker = worker_for(send, lambda: [fake])
    run(worker, perform(EngineSettings(mode="harmonize"), [(72, 0, 4 * PPQ - 10)], end_ticks=4 * PPQ))
    ons = send.note_ons()
    # the first chord, then one alto move per beat where the model's alto differs from what sounds
    assert [m.note for m in ons] == [51, 40, 30, 55, 59, 63] and worker.counts["moves"] == 3
    assert send.sounding == set()  # the melody's note-off released the harmony


@pytest.mark.parametrize(("pitch", "held"), [(74, True), (71, False)])
def test_a_new_note_between_changes_holds_unless_it_clashes(pitch: int, held: bool) -> None:
    fake = FakeHarmonizer(lambda s, n: (67, 64, 48) if n == 1 else (66, 62, 50))
    send = RecordingSend()
    worker = worker_for(send, lambda: [fake])
    settings = EngineSettings(mode="harmonize")
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, settings=settings))
    worker.process(HarmonizeNote(pitch, 100, 0, 2 * PPQ // 4, 2, False, settings=settings))
    expected = {(0, 67), (0, 64), (0, 48)} if held else {(0, 66), (0, 62), (0, 50)}
    assert send.sounding == expected  # D over a C chord rings on; B rubs against C (a semitone): re-voiced


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, {(0, 67), (0, 64), (0, 48)}),
    ({"harmony_channels": (1, 2, 3)}, {(1, 67), (2, 64), (3, 48)}),
    ({"harmony_style": "block"}, {(0, 60), (0, 64), (0, 67)}),
    ({"harmony_style": "bass"}, {(0, 48)}),
    ({"harmony_style": "bass", "harmony_channels": (1, 2, 3)}, {(3, 48)}),
    ({"harmony_style": "pad", "pad_low_note": 48}, {(0, 48), (0, 55), (0, 52)}),
    ({"harmony_style": "pad", "pad_low_note": 57}, {(0, 60), (0, 67), (0, 64)}),
])
def test_voicing_styles(changes: dict, expected: set[tuple[int, int]]) -> None:
    settings = EngineSettings(mode="harmonize", **changes)
    assert set(voice_notes(settings, 72, (67, 64, 48))) == expected
    send = RecordingSend()
    worker = worker_for(send, lambda: [FakeHarmonizer(chorale)])
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, settings=settings))
    assert send.sounding == expected and all(tag == HARMONY_TAG for _, tag in send.messages)
    assert all(m.velocity == 80 for m in send.note_ons())


def test_voicing_leaves_out_the_melodys_own_key_when_it_is_echoed() -> None:
    settings = EngineSettings(mode="harmonize", thru=True)
    assert (0, 72) not in voice_notes(settings, 72, (72, 64, 48))
    assert clashes(72, [71], "chorale") and clashes(72, [73], "pad") and not clashes(72, [76], "pad")


def test_new_phrases_start_on_a_model_primed_for_their_position_in_the_beat() -> None:
    fakes = [FakeHarmonizer(chorale) for _ in range(4)]
    worker = worker_for(RecordingSend(), lambda: fakes, seed=5)
    assert sorted(r for f in fakes for r in f.resets[-1:]) == [(5, 0), (5, 1), (5, 2), (5, 3)]
    settings = EngineSettings(mode="harmonize", seed=5)
    worker.process(HarmonizeNote(72, 100, 0, 6 * PPQ // 4, 6, True, settings=settings))
    used = next(f for f in fakes if f.sopranos)
    assert used.resets == [(5, 2)] and used.sopranos == [72]  # no reset on the note: it was primed
    worker.process(StopHarmony(7 * PPQ // 4, "rest"))
    while worker.work_when_idle():  # what the thread does when idle
        pass
    assert used.resets[-1] == (5, 2) and len(used.resets) == 2
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, settings=settings.replace(seed=9)))
    assert any(f.resets[-1] == (9, 0) for f in fakes)  # another seed: reset for it



def test_models_are_primed_with_the_last_phrases_temperature_and_key_lock() -> None:
    fakes = [FakeHarmonizer(chorale) for _ in range(4)]
    worker = worker_for(RecordingSend(), lambda: fakes)
    c_major = frozenset({0, 2, 4, 5, 7, 9, 11})
    settings = EngineSettings(mode="harmonize", temperature=1.5)
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, c_major, None, settings))
    worker.process(StopHarmony(PPQ // 4, "rest"))
    while worker.work_when_idle():  # what the thread does when idle
        pass
    # the next phrase's first note finds a model that prepared its chords with these settings (no stale table)
    assert [(m.temperature, m.key_lock, m.fresh) for m in worker._models.primed()] == [(1.5, c_major, True)] * 4


def test_a_model_failure_is_logged_silenced_and_the_next_phrase_plays() -> None:
    def script(soprano: int | None, step: int) -> Voices:
        if soprano == 99:
            raise RuntimeError("boom")
        return (67, 64, 48)

    send, logs = RecordingSend(), []
    worker = worker_for(send, lambda: [FakeHarmonizer(script)], logs)
    settings = EngineSettings(mode="harmonize")
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, settings=settings))
    worker.process(HarmonizeNote(99, 100, 0, PPQ, 4, True, settings=settings))
    assert send.sounding == set() and any("boom" in text for level, text in logs if level == "error")
    worker.process(HarmonizeNote(72, 100, 0, 2 * PPQ, 8, True, settings=settings))
    assert len(send.sounding) == 3


def test_a_missing_model_turns_harmony_off_with_a_message() -> None:
    from companion.errors import CheckpointError

    def loader() -> list:
        raise CheckpointError("models/checkpoints/harmonizer.pt: no such file")

    send, logs = RecordingSend(), []
    worker = worker_for(send, loader, logs)
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, settings=EngineSettings(mode="harmonize")))
    worker.process(ReleaseHarmony(72, 10))
    assert send.messages == [] and worker.failed is not None and not worker.wait_ready(0)
    assert logs and "harmony is off" in logs[0][1] and "harmonizer.pt" in logs[0][1]


def test_a_detached_note_between_changes_finds_the_same_chord_again() -> None:
    fake = FakeHarmonizer(lambda s, n: (67, 64, 48) if n == 1 else (65, 62, 50))
    send = RecordingSend()
    worker = worker_for(send, lambda: [fake])
    settings = EngineSettings(mode="harmonize", harmony_style="block")
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, settings=settings))
    worker.process(ReleaseHarmony(72, 100))
    worker.process(HarmonizeNote(74, 100, 0, 2 * PPQ // 4, 2, False, settings=settings))
    assert send.sounding == {(0, 64), (0, 67), (0, 72)}  # C major again, close under the new melody note D
    worker.process(ReleaseHarmony(74, 300))
    worker.process(HarmonizeNote(73, 100, 0, 3 * PPQ // 4, 3, False, settings=settings))
    assert send.sounding == {(0, 62), (0, 65), (0, 61)}  # C# rubs against C: the model's new chord instead


def test_a_note_that_waited_too_long_is_not_sounded_late() -> None:
    fake = FakeHarmonizer(chorale)
    send = RecordingSend()
    worker = worker_for(send, lambda: [fake])
    settings = EngineSettings(mode="harmonize")
    worker.process(HarmonizeNote(72, 100, 0, 0, 0, True, settings=settings), time.monotonic_ns() - 2 * 10**9)
    assert send.messages == [] and worker.counts["late"] == 1 and fake.sopranos == [72]  # the model still heard it
    worker.process(HarmonizeNote(74, 100, 0, PPQ, 4, True, settings=settings), time.monotonic_ns())
    assert len(send.sounding) == 3 and fake.sopranos == [72] * 4 + [74]
