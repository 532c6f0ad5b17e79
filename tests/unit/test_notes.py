"""The note ledger: counts, strays, release; a property test proves nothing is left sounding."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.core.events import ControlChange, NoteOff, PitchBend
from companion.core.notes import NoteLedger


def test_on_off_and_sounding() -> None:
    ledger = NoteLedger()
    assert ledger.on(0, 60) is False
    assert ledger.on(1, 64) is False
    assert ledger.sounding() == [(0, 60), (1, 64)]
    assert len(ledger) == 2 and (0, 60) in ledger and ledger.is_sounding(1, 64)
    assert ledger.off(0, 60) is True
    assert ledger.sounding() == [(1, 64)]


def test_two_note_ons_need_two_note_offs() -> None:
    ledger = NoteLedger()
    ledger.on(0, 60)
    assert ledger.on(0, 60) is True  # a re-trigger: the caller may send a note-off first
    assert ledger.count(0, 60) == 2
    assert ledger.off(0, 60) is True
    assert ledger.is_sounding(0, 60)
    assert ledger.off(0, 60) is True
    assert not ledger.is_sounding(0, 60)


def test_stray_note_off_returns_false() -> None:
    ledger = NoteLedger()
    assert ledger.off(3, 70) is False
    assert len(ledger) == 0


def test_release_all_sends_one_note_off_per_key() -> None:
    ledger = NoteLedger()
    ledger.on(0, 60)
    ledger.on(0, 60)
    ledger.on(9, 36)
    assert ledger.release_all() == [NoteOff(0, 60), NoteOff(9, 36)]
    assert len(ledger) == 0 and not ledger
    assert ledger.release_all() == []


def test_release_channel_leaves_other_channels() -> None:
    ledger = NoteLedger()
    ledger.on(0, 60)
    ledger.on(1, 61)
    ledger.on(1, 62)
    assert ledger.release_channel(1) == [NoteOff(1, 61), NoteOff(1, 62)]
    assert ledger.sounding() == [(0, 60)]
    assert ledger.channels() == [0]


def test_off_all_voices() -> None:
    ledger = NoteLedger()
    ledger.on(2, 50)
    ledger.on(2, 50)
    assert ledger.off_all_voices(2, 50) is True
    assert ledger.off_all_voices(2, 50) is False
    assert len(ledger) == 0


@pytest.mark.parametrize(("channel", "pitch"), [(16, 60), (-1, 60), (0, 128), (0, -1)])
def test_out_of_range_note_on_is_refused(channel: int, pitch: int) -> None:
    with pytest.raises(ValueError, match="0..1"):
        NoteLedger().on(channel, pitch)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("on"), st.integers(0, 15), st.integers(0, 127)),
        st.tuples(st.just("off"), st.integers(0, 15), st.integers(0, 127)),
        st.tuples(st.just("panic_channel"), st.integers(0, 15), st.just(0)),
        st.tuples(st.just("panic"), st.just(0), st.just(0)),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_property_release_all_covers_exactly_what_was_on(sequence: list[tuple[str, int, int]]) -> None:
    ledger = NoteLedger()
    model: Counter[tuple[int, int]] = Counter()  # an independent, obviously right model
    strays = 0
    for op, channel, pitch in sequence:
        if op == "on":
            ledger.on(channel, pitch)
            model[(channel, pitch)] += 1
        elif op == "off":
            known = ledger.off(channel, pitch)
            if model[(channel, pitch)] > 0:
                model[(channel, pitch)] -= 1
                assert known
            else:
                assert not known
                strays += 1
        elif op == "panic_channel":
            released = ledger.release_channel(channel)
            expected = sorted(k for k, n in model.items() if n > 0 and k[0] == channel)
            assert [(off.channel, off.note) for off in released] == expected
            for key in expected:
                model[key] = 0
        else:
            released = ledger.release_all()
            assert [(off.channel, off.note) for off in released] == sorted(
                k for k, n in model.items() if n > 0
            )
            model.clear()
        assert len(ledger) == sum(1 for n in model.values() if n > 0)
    sounding = sorted(k for k, n in model.items() if n > 0)
    offs = ledger.release_all()
    assert [(off.channel, off.note) for off in offs] == sounding
    assert len({(off.channel, off.note) for off in offs}) == len(offs)  # one note-off per key
    assert len(ledger) == 0 and ledger.sounding() == []


def test_notes_from_wire_pairs_ons_and_offs_and_reports_what_still_sounds() -> None:
    from companion.core.notes import notes_from_wire

    wire = [(0, [0x90, 60, 100]), (10, [0x91, 60, 90]), (20, [0x80, 60, 0]), (30, [0x90, 62, 80]),
            (40, [0x90, 62, 70]), (50, [0x90, 62, 0]), (60, [0x90, 64, 50]), (70, [0xB0, 64, 127])]
    closed, sounding = notes_from_wire(wire, lambda ns: ns * 2)
    assert [(n.channel, n.pitch, n.start_ticks, n.duration_ticks, n.velocity) for n in closed] == [
        (0, 60, 0, 40, 100), (0, 62, 60, 20, 80), (0, 62, 80, 20, 70)]
    assert [(n.channel, n.pitch, n.start_ticks) for n in sounding] == [(1, 60, 20), (0, 64, 120)]


def test_held_controllers_are_remembered_until_they_rest_and_released_once() -> None:
    ledger = NoteLedger()
    ledger.controller(ControlChange(0, 64, 127))
    ledger.controller(ControlChange(0, 7, 100))  # channel volume: a setting, not held sound
    ledger.controller(PitchBend(3, 8191))
    ledger.controller(ControlChange(5, 1, 40))
    ledger.controller(ControlChange(5, 1, 0))  # the mod wheel back at rest: nothing to set back
    assert ledger.held_controllers() == [(0, 64), (3, -1)]
    assert ledger.release_controllers() == [ControlChange(0, 64, 0), PitchBend(3, 0)]
    assert ledger.release_controllers() == []
