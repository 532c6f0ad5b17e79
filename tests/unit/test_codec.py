"""Codec: every event round-trips through bytes; malformed input is counted, never raised."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from companion.core.events import (
    ClockContinue,
    ClockPulse,
    ClockStart,
    ClockStop,
    ControlChange,
    NoteOff,
    NoteOn,
    PitchBend,
    ProgramChange,
    SongPosition,
)
from companion.midi import codec
from companion.midi.codec import DecodeStats, decode, encode

EVENTS = [
    (NoteOn(0, 60, 100), [0x90, 60, 100]),
    (NoteOn(15, 127, 1), [0x9F, 127, 1]),
    (NoteOff(3, 64, 40), [0x83, 64, 40]),
    (ControlChange(1, 64, 127), [0xB1, 64, 127]),
    (ProgramChange(9, 5), [0xC9, 5]),
    (PitchBend(0, 0), [0xE0, 0x00, 0x40]),
    (PitchBend(0, -8192), [0xE0, 0x00, 0x00]),
    (PitchBend(2, 8191), [0xE2, 0x7F, 0x7F]),
    (ClockPulse(), [0xF8]),
    (ClockStart(), [0xFA]),
    (ClockContinue(), [0xFB]),
    (ClockStop(), [0xFC]),
    (SongPosition(0), [0xF2, 0, 0]),
    (SongPosition(16383), [0xF2, 0x7F, 0x7F]),
    (SongPosition(130), [0xF2, 2, 1]),
]


@pytest.mark.parametrize(("message", "wire"), EVENTS)
def test_encode_decode_round_trip(message: object, wire: list[int]) -> None:
    assert encode(message) == wire
    stats = DecodeStats()
    assert decode(wire, stats) == message
    assert decode(bytes(wire)) == message
    assert stats.decoded == 1 and stats.dropped == 0


def test_note_on_with_velocity_zero_is_note_off() -> None:
    assert decode([0x92, 61, 0]) == NoteOff(2, 61, 0)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ([], codec.EMPTY),
        ([60, 100], codec.STRAY_DATA),
        ([0x90, 60], codec.TRUNCATED),
        ([0x90], codec.TRUNCATED),
        ([0xC0], codec.TRUNCATED),
        ([0xF2, 1], codec.TRUNCATED),
        ([0x90, 60, 100, 1], codec.TOO_LONG),
        ([0xF8, 0], codec.TOO_LONG),
        ([0x90, 128, 100], codec.DATA_OUT_OF_RANGE),
        ([0x90, 60, 0x90], codec.DATA_OUT_OF_RANGE),
        ([0x90, 60, 300], codec.DATA_OUT_OF_RANGE),
        ([0x90, -1, 3], codec.DATA_OUT_OF_RANGE),
        ([256], codec.DATA_OUT_OF_RANGE),
        ([0xF0, 0x7E, 0x7F, 0xF7], codec.SYSEX),
        ([0xF0, 1, 2, 3], codec.SYSEX),
        ([0xA0, 60, 10], codec.UNSUPPORTED),
        ([0xD0, 10], codec.UNSUPPORTED),
        ([0xFE], codec.UNSUPPORTED),
        ([0xFF], codec.UNSUPPORTED),
        ([0xF4], codec.UNKNOWN_STATUS),
        ([0xFD], codec.UNKNOWN_STATUS),
    ],
)
def test_malformed_is_counted_by_reason(wire: list[int], reason: str) -> None:
    stats = DecodeStats()
    assert decode(wire, stats) is None
    assert stats.counts[reason] == 1
    assert stats.dropped == 1
    assert stats.as_dict() == {reason: 1, "decoded": 0}


@given(st.lists(st.integers(min_value=-5, max_value=300), max_size=8))
def test_decode_never_raises_on_any_bytes(wire: list[int]) -> None:
    stats = DecodeStats()
    result = decode(wire, stats)
    assert (result is None) == (stats.dropped == 1)
    if result is not None:
        assert 0x80 <= wire[0] <= 0xFF and len(encode(result)) == len(wire)


@given(st.binary(max_size=6))
def test_decode_bytes_then_encode_gives_the_same_bytes(wire: bytes) -> None:
    result = decode(wire)
    if result is not None and not (wire[0] & 0xF0 == 0x90 and wire[2] == 0):
        assert encode(result) == list(wire)


@pytest.mark.parametrize(
    ("message", "field"),
    [(NoteOn(16, 60, 1), "channel"), (NoteOn(0, 128, 1), "note"), (ControlChange(0, 7, 200), "value"),
     (PitchBend(0, 9000), "value"), (SongPosition(-1), "sixteenths")],
)
def test_encode_out_of_range_names_the_field(message: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        encode(message)


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(TypeError, match="str"):
        encode("note")  # type: ignore[arg-type]
