"""Scheduler over JACK: notes leave `Companion Out` on the grid, and close() leaves nothing sounding."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from midi_wire import ON_TIME_BOUND_MS

from companion.core.events import PPQ, Note
from companion.live.scheduler import Scheduler
from companion.midi.clock import InternalClock
from companion.midi.ports import open_output

pytestmark = pytest.mark.jack

GRID_BOUND_NS = int(ON_TIME_BOUND_MS * 1e6)  # behaviour (on the grid, never early), not speed


def sounding(messages: list[tuple[list[int], int]]) -> set[tuple[int, int]]:
    keys: set[tuple[int, int]] = set()
    for data, _ in messages:
        kind, channel = data[0] & 0xF0, data[0] & 0x0F
        if kind == 0x90 and data[2] > 0:
            keys.add((channel, data[1]))
        elif kind in (0x80, 0x90):
            keys.discard((channel, data[1]))
        elif kind == 0xB0 and data[1] in (120, 123):
            keys = {k for k in keys if k[0] != channel}
    return keys


def test_scheduled_notes_arrive_on_the_grid_and_close_silences(jack_client: Callable[..., Any],
                                                               poll: Callable[..., Any]) -> None:
    with open_output("jack", port=None, virtual_name="Companion Out grid-test") as midi_out:
        synth = jack_client("fake-synth").connect_in("Companion Out grid-test")
        # Wait until the connection carries messages (the first JACK cycles after connecting may not).
        assert poll(lambda: (midi_out.send([0xB0, 119, 0]), synth.wait_for(lambda m: bool(m), 0.05))[1], 5.0)
        clock = InternalClock(120.0)
        scheduler = Scheduler(midi_out.send, clock).start()
        try:
            timebase = clock.timebase()
            start_ticks = timebase.next_beat(timebase.ticks_at(time.monotonic_ns()) + PPQ // 2)
            notes = [Note(60 + i % 12, 90, start_ticks + i * PPQ // 4, PPQ // 8) for i in range(16)]
            scheduler.submit(notes, "answer")
            held = Note(48, 70, start_ticks + 4 * PPQ, 64 * PPQ, channel=2)  # still sounding at close
            scheduler.submit([held], "answer")
            assert synth.wait_for(lambda m: (2, 48) in sounding(m), 10.0), synth.messages()
            ons = [(d, t) for d, t in synth.messages() if d[0] == 0x90 and d[1] != 48]
            assert [d[1] for d, _ in ons] == [n.pitch for n in notes]
            for (_, arrived_ns), note in zip(ons, notes, strict=True):
                late_ns = arrived_ns - timebase.ns_at(note.start_ticks)
                assert 0 <= late_ns <= GRID_BOUND_NS, (note, late_ns)
        finally:
            scheduler.close()
        assert synth.wait_for(lambda m: not sounding(m) and [0xB2, 123, 0] in [d for d, _ in m], 5.0), (
            sounding(synth.messages()), synth.messages()[-12:], scheduler.sounding())
        assert scheduler.sounding() == []
