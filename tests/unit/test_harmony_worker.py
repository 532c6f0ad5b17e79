"""The harmony worker: model steps on the grid, voicing styles, held chords, key lock, every note closed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from companion.core.engine import Engine, EngineSettings
from companion.core.events import (
    PPQ,
    ChannelMessage,
    HarmonizeNote,
    HarmonyCommand,
    HarmonyStep,
    NoteOff,
    NoteOn,
    ReleaseHarmony,
    StopHarmony,
)
from companion.core.modes.harmonize import HARMONY_TAG, RevoiceNote, SteerHarmony
from companion.harmony import HarmonyWorker, load_harmonizers
from companion.harmony_voicing import clashes, voice_notes

RANGES = [(60, 81), (52, 74), (46, 69), (36, 66)]
Voices = tuple[int | None, int | None, int | None]
# (pitch, start_ticks, duration_ticks): a hymn-like line, a rest, an off-beat note
MELODY = [(72, 0, 470), (74, 480, 470), (76, 960, 950), (74, 1920, 230), (72, 2160, 700), (71, 3360, 460)]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised chorale net saved like the shipped one (CPU, milliseconds)."""
    import torch

    from models.checkpoint import save_checkpoint
    from models.harmonizer_net import ChoraleConfig, ChoraleNet
    from models.jsb import JsbVocab

    vocab = JsbVocab()
    torch.manual_seed(0)
    net = ChoraleNet(ChoraleConfig(vocab_size=vocab.size, block_size=64, n_layer=1, n_head=2, n_embd=32,
                                   dropout=0.0, head_hidden=64, head_layers=1))
    path = tmp_path_factory.mktemp("harmony") / "tiny.pt"
    save_checkpoint(path, net, kind="harmonizer", model_config=net.config.to_dict(),
                    tokenizer_config={**vocab.to_dict(), "voice_ranges": [list(r) for r in RANGES]},
                    data={}, metrics={})
    return path


class RecordingSend:
    """Stands in for Scheduler.send_now: keeps what was sent and what is sounding."""

    def __init__(self) -> None:
        self.messages: list[tuple[ChannelMessage, str]] = []
        self.sounding: set[tuple[int, int]] = set()

    def __call__(self, message: ChannelMessage, tag: str) -> None:
        self.messages.append((message, tag))
        key = (message.channel, message.note)  # type: ignore[union-attr]
        if isinstance(message, NoteOn):
            assert key not in self.sounding, f"{key} struck again while sounding"
            self.sounding.add(key)
        elif isinstance(message, NoteOff):
            assert key in self.sounding, f"note-off for {key}, which is not sounding"
            self.sounding.discard(key)

    def note_ons(self) -> list[NoteOn]:
        return [m for m, _ in self.messages if isinstance(m, NoteOn)]


class FakeHarmonizer:
    """A scripted model: voices from `script(soprano, step_number)`; records what it was asked."""

    def __init__(self, script: Callable[[int | None, int], Voices]) -> None:
        self.script = script
        self.temperature = 1.0
        self.key_lock: frozenset[int] | None = None
        self.octave_shift_semitones = 0
        self.shift_changed = False
        self.sopranos: list[int | None] = []
        self.resets: list[tuple[int, int]] = []
        self.finished = 0
        self.prepared: list[frozenset[int] | None] = []  # the key lock of each table rebuilt by prepare()
        self.fresh = True  # whether the coming step's chords were prepared with the settings in force

    def reset(self, seed: int = 0, *, position_in_beat: int = 0) -> None:
        self.resets.append((seed, position_in_beat))
        self.sopranos = []
        self.finished = 0
        self.fresh = True

    def step(self, soprano: int | None) -> Voices:
        self.sopranos.append(soprano)
        self.stale_steps = getattr(self, "stale_steps", 0) + (not self.fresh)
        return self.script(soprano, len(self.sopranos))

    def finish_step(self) -> None:
        self.finished += 1
        self.fresh = True

    def set_key_lock(self, pitch_classes: Iterable[int] | None) -> None:
        self.key_lock = None if pitch_classes is None else frozenset(pitch_classes)
        self.fresh = False

    def redo_step(self, soprano: int | None) -> Voices | None:
        self.sopranos[-1] = soprano  # the last step, taken again
        self.redone = getattr(self, "redone", 0) + 1
        return self.script(soprano, len(self.sopranos))

    def prepare(self, interrupted: Callable[[], bool] | None = None) -> bool:
        if not self.fresh:
            self.prepared.append(self.key_lock)
            self.fresh = True
        return True


def perform(settings: EngineSettings, melody: list[tuple[int, int, int]], end_ticks: int | None = None,
            every_ticks: int = 10) -> list[HarmonyCommand]:
    """Play `melody` into the real engine tick by tick; the harmony commands it gives, in order."""
    engine = Engine(settings)
    events = [(s, 1, NoteOn(0, p, 100)) for p, s, _ in melody] + [(s + d, 0, NoteOff(0, p)) for p, s, d in melody]
    events.sort(key=lambda e: (e[0], e[1]))
    end = end_ticks if end_ticks is not None else max(s + d for _, s, d in melody) + PPQ
    commands: list = []
    index = 0
    for now in range(0, end + 1, every_ticks):
        while index < len(events) and events[index][0] <= now:
            commands += engine.handle(events[index][2], events[index][0])
            index += 1
        commands += engine.tick(now)
    return [c for c in commands if isinstance(c, HarmonyCommand)]


def worker_for(send: RecordingSend, loader: Callable[[], list], logs: list[tuple[str, str]] | None = None,
               seed: int = 0) -> HarmonyWorker:
    worker = HarmonyWorker(send, loader, log_line=lambda level, text: (logs if logs is not None else []).append(
        (level, text)), seed=seed)
    worker.load()
    return worker


def run(worker: HarmonyWorker, commands: list[HarmonyCommand]) -> None:
    for command in commands:
        worker.process(command, time.monotonic_ns() if isinstance(command, HarmonizeNote) else None)


def chorale(soprano: int | None, step: int) -> Voices:
    return (67, 64, 48)


# --- with a scripted model ------------------------------------------------------------------------------------


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


# --- with a tiny real model --------------------------------------------------------------------------------------


def tiny(path: Path) -> Callable[[], list]:
    return lambda: load_harmonizers(path, threads=1)


def test_voices_stay_in_their_ranges_on_their_channels(tiny_checkpoint: Path) -> None:
    send = RecordingSend()
    worker = worker_for(send, tiny(tiny_checkpoint))
    settings = EngineSettings(mode="harmonize", harmony_channels=(1, 2, 3), temperature=2.0)
    melody = [(60 + (i * 5) % 21, i * PPQ // 2, PPQ // 2 - 10) for i in range(24)]
    run(worker, perform(settings, melody))
    ons = send.note_ons()
    assert ons and {m.channel for m in ons} <= {1, 2, 3}
    for m in ons:
        lo, hi = RANGES[m.channel]
        assert lo <= m.note <= hi, f"{m} outside {RANGES[m.channel]}"
    assert send.sounding == set()


def test_same_seed_same_harmony_another_seed_another(tiny_checkpoint: Path) -> None:
    def harmony(seed: int) -> list:
        send = RecordingSend()
        worker = worker_for(send, tiny(tiny_checkpoint), seed=seed)
        settings = EngineSettings(mode="harmonize", seed=seed, temperature=1.5)
        run(worker, perform(settings, MELODY * 1))
        return [m for m, _ in send.messages]

    assert harmony(3) == harmony(3)
    assert harmony(3) != harmony(4)


def test_key_lock_and_the_left_hand_chord_limit_the_pitch_classes(tiny_checkpoint: Path) -> None:
    c_major, c_triad = frozenset({0, 2, 4, 5, 7, 9, 11}), frozenset({0, 4, 7})
    for pcs, chord in ((c_major, None), (c_major, c_triad)):
        send = RecordingSend()
        worker = worker_for(send, tiny(tiny_checkpoint))
        settings = EngineSettings(mode="harmonize", temperature=3.0)
        for i in range(16):
            worker.process(HarmonizeNote(72 + i % 3, 100, 0, i * PPQ, 4 * i, True, pcs, chord, settings))
        allowed = chord or pcs
        assert send.note_ons() and all(m.note % 12 in allowed for m in send.note_ons())


def test_melodies_outside_the_range_are_folded_and_logged(tiny_checkpoint: Path) -> None:
    send, logs = RecordingSend(), []
    worker = worker_for(send, tiny(tiny_checkpoint), logs)
    settings = EngineSettings(mode="harmonize")
    for i, pitch in enumerate([96, 98, 100, 62]):
        worker.process(HarmonizeNote(pitch, 100, 0, i * PPQ, 4 * i, True, settings=settings))
    texts = [text for _, text in logs]
    assert any("at C7 the model hears the melody 2 octaves down" in t for t in texts), texts
    assert any("back in the chorale range" in t for t in texts)
    assert worker.counts["errors"] == 0


def test_threaded_worker_voices_notes_and_closes_everything(tiny_checkpoint: Path) -> None:
    send = RecordingSend()
    worker = HarmonyWorker(send, tiny(tiny_checkpoint)).start()
    assert worker.wait_ready(30.0)
    settings = EngineSettings(mode="harmonize", harmony_style="block")
    for command in perform(settings, MELODY[:3], end_ticks=2 * PPQ):
        worker.submit(command, time.monotonic_ns())
    deadline = time.monotonic() + 10
    while worker.counts["notes"] < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert worker.counts["notes"] == 3 and send.note_ons()
    assert worker.latency_stats()["n"] >= 1
    worker.close()
    assert send.sounding == set()


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


def test_the_runtime_starts_the_worker_and_routes_harmony_through_the_scheduler(tiny_checkpoint: Path) -> None:
    import threading

    from companion.generators import MarkovGenerator
    from companion.midi.clock import InternalClock
    from companion.midi.loopback import LoopbackPorts
    from companion.runtime import Runtime

    to_engine, from_engine = LoopbackPorts("in"), LoopbackPorts("out")
    received: list[list[int]] = []
    lock = threading.Lock()

    def on_receive(data: list[int], time_ns: int) -> None:
        with lock:
            received.append(data)

    def sounding() -> set[tuple[int, int]]:
        keys: set[tuple[int, int]] = set()
        with lock:
            for data in received:
                if data[0] & 0xF0 == 0x90 and data[2] > 0:
                    keys.add((data[0] & 0x0F, data[1]))
                elif data[0] & 0xF0 in (0x80, 0x90):
                    keys.discard((data[0] & 0x0F, data[1]))
        return keys

    def poll(predicate: Callable[[], object], timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    receiver = from_engine.open_input(on_receive)
    settings = EngineSettings(mode="harmonize", harmony_channels=(1, 2, 3), key_lock=False)
    runtime = Runtime(settings, inputs=[to_engine.open_input], outputs=[from_engine.open_output()],
                      generator=MarkovGenerator(), clock=InternalClock(120.0), harmonizer_loader=tiny(tiny_checkpoint))
    player = to_engine.open_output()
    try:
        runtime.start()
        assert poll(lambda: runtime.harmony is not None and runtime.harmony.wait_ready(0))
        player.send([0x90, 72, 100])
        assert poll(lambda: len(sounding()) >= 1), "no harmony came out"
        assert {channel for channel, _ in sounding()} <= {1, 2, 3}
        player.send([0x80, 72, 0])
        assert poll(lambda: not sounding()), "the harmony outlived its melody note"
        player.send([0x90, 74, 100])
        assert poll(lambda: len(sounding()) >= 1)
    finally:
        runtime.close()
        receiver.close()
    assert not sounding() and runtime.harmony is not None and runtime.harmony.counts["notes"] == 2


def test_a_melody_above_the_range_keeps_the_voices_in_their_ranges_one_far_below_never_goes_sub_audio(
        tiny_checkpoint: Path) -> None:
    """Above the chorale range the voices stay in their ranges; below it they follow the melody down one octave
    at most, and no harmony note sounds below E1 (MIDI 28). A melody at C1-G1 used to give harmony at 5-24."""
    send = RecordingSend()
    worker = worker_for(send, tiny(tiny_checkpoint))
    settings = EngineSettings(mode="harmonize", harmony_channels=(1, 2, 3), temperature=2.0)
    melody = [(p, i * PPQ // 2, PPQ // 2 - 10) for i, p in enumerate([96, 98, 100, 96, 93, 91] * 2)]
    run(worker, perform(settings, melody))
    ons = send.note_ons()
    assert ons and all(RANGES[m.channel][0] <= m.note <= RANGES[m.channel][1] for m in ons), ons
    send.messages.clear()
    melody = [(p, i * PPQ // 2, PPQ // 2 - 10) for i, p in enumerate([24, 26, 28, 29, 31, 29, 28, 26] * 3)]
    run(worker, perform(settings, melody))
    ons = send.note_ons()
    assert ons and min(m.note for m in ons) >= 28, sorted(m.note for m in ons)
    assert all(m.note <= RANGES[m.channel][1] - 12 for m in ons if m.note - 12 >= 28)  # an octave down at most
    assert send.sounding == set()


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
