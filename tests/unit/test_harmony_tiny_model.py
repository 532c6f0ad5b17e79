"""The harmony worker with a tiny real model (CPU, milliseconds): ranges, seeds, key lock, folding, the
thread and the runtime."""

from __future__ import annotations

import time
from pathlib import Path

from harmony_fakes import MELODY, RANGES, RecordingSend, perform, poll, run, tiny, worker_for

from companion.core.engine import EngineSettings
from companion.core.events import PPQ, HarmonizeNote
from companion.harmony.worker import HarmonyWorker


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


def test_the_runtime_starts_the_worker_and_routes_harmony_through_the_scheduler(tiny_checkpoint: Path) -> None:
    import threading

    from companion.live.runtime import Runtime
    from companion.midi.clock import InternalClock
    from companion.midi.loopback import LoopbackPorts
    from companion.worker.generators import MarkovGenerator

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
