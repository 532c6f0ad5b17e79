"""MIDI wire bytes <-> event dataclasses; malformed input is counted per reason, never raised."""

from __future__ import annotations

from collections.abc import Sequence

from companion.core.events import (
    ClockContinue,
    ClockPulse,
    ClockStart,
    ClockStop,
    ControlChange,
    Message,
    NoteOff,
    NoteOn,
    PitchBend,
    ProgramChange,
    SongPosition,
)

# Reasons a message is dropped; `DecodeStats.counts` has one key per reason.
EMPTY = "empty"
STRAY_DATA = "stray_data"  # first byte is a data byte (running status is not used by rtmidi)
TRUNCATED = "truncated"
TOO_LONG = "too_long"
DATA_OUT_OF_RANGE = "data_out_of_range"  # a data byte > 127 (or not an int 0..255)
SYSEX = "sysex"
UNSUPPORTED = "unsupported"  # valid MIDI the engine does not use: aftertouch, MTC, song select, reset ...
UNKNOWN_STATUS = "unknown_status"  # undefined status bytes F4 F5 F9 FD
REASONS = (EMPTY, STRAY_DATA, TRUNCATED, TOO_LONG, DATA_OUT_OF_RANGE, SYSEX, UNSUPPORTED, UNKNOWN_STATUS)

# Message length (status included) per channel-voice kind, by high nibble.
_CHANNEL_LENGTHS = {0x80: 3, 0x90: 3, 0xA0: 3, 0xB0: 3, 0xC0: 2, 0xD0: 2, 0xE0: 3}
_REALTIME = {0xF8: ClockPulse(), 0xFA: ClockStart(), 0xFB: ClockContinue(), 0xFC: ClockStop()}
_SUPPORTED_UNUSED_SYSTEM = {0xF1, 0xF3, 0xF6, 0xF7, 0xFE, 0xFF}
_UNDEFINED_SYSTEM = {0xF4, 0xF5, 0xF9, 0xFD}


class DecodeStats:
    """Counts of dropped messages per reason (not thread-safe on purpose: one decoding thread owns it)."""

    __slots__ = ("counts", "decoded")

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.decoded = 0

    def drop(self, reason: str) -> None:
        self.counts[reason] += 1

    @property
    def dropped(self) -> int:
        return sum(self.counts.values())

    def malformed(self) -> dict[str, int]:
        """Counts of the reasons that mean broken bytes (SysEx and unused valid MIDI are not), for warnings."""
        return {reason: n for reason, n in self.counts.items() if n and reason not in (SYSEX, UNSUPPORTED)}

    def as_dict(self) -> dict[str, int]:
        """A copy for the UI/log: only reasons seen, plus the number decoded."""
        out = {reason: n for reason, n in self.counts.items() if n}
        out["decoded"] = self.decoded
        return out


def _reject(stats: DecodeStats | None, reason: str) -> None:
    if stats is not None:
        stats.drop(reason)
    return None


def decode(data: bytes | Sequence[int], stats: DecodeStats | None = None) -> Message | None:
    """One complete MIDI message -> an event, or None (counted in `stats`) if malformed or unused."""
    n = len(data)
    if n == 0:
        return _reject(stats, EMPTY)
    status = data[0]
    if not isinstance(status, int) or status < 0 or status > 255:
        return _reject(stats, DATA_OUT_OF_RANGE)
    if status < 0x80:
        return _reject(stats, STRAY_DATA)
    for byte in data[1:] if n > 1 else ():
        if not isinstance(byte, int) or byte < 0 or byte > 127:
            # A status byte inside the message is as broken as a value > 255; SysEx start is named apart.
            return _reject(stats, SYSEX if status == 0xF0 else DATA_OUT_OF_RANGE)
    if status == 0xF0:
        return _reject(stats, SYSEX)
    message: Message | None
    if status < 0xF0:
        kind = status & 0xF0
        expected = _CHANNEL_LENGTHS[kind]
        if n < expected:
            return _reject(stats, TRUNCATED)
        if n > expected:
            return _reject(stats, TOO_LONG)
        channel = status & 0x0F
        if kind == 0x90:
            message = NoteOn(channel, data[1], data[2]) if data[2] else NoteOff(channel, data[1], 0)
        elif kind == 0x80:
            message = NoteOff(channel, data[1], data[2])
        elif kind == 0xB0:
            message = ControlChange(channel, data[1], data[2])
        elif kind == 0xC0:
            message = ProgramChange(channel, data[1])
        elif kind == 0xE0:
            message = PitchBend(channel, ((data[2] << 7) | data[1]) - 8192)
        else:  # 0xA0 poly aftertouch, 0xD0 channel pressure
            return _reject(stats, UNSUPPORTED)
    elif status in _REALTIME:
        if n != 1:
            return _reject(stats, TOO_LONG)
        message = _REALTIME[status]
    elif status == 0xF2:
        if n < 3:
            return _reject(stats, TRUNCATED)
        if n > 3:
            return _reject(stats, TOO_LONG)
        message = SongPosition((data[2] << 7) | data[1])
    elif status in _SUPPORTED_UNUSED_SYSTEM:
        return _reject(stats, UNSUPPORTED)
    else:
        return _reject(stats, UNKNOWN_STATUS)
    if stats is not None:
        stats.decoded += 1
    return message


def _check(name: str, value: int, low: int, high: int, message: object) -> int:
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"cannot encode {message!r}: {name}={value!r} is outside {low}..{high}")
    return value


def encode(message: Message) -> list[int]:
    """An event -> wire bytes; raises ValueError naming the field when a value is out of range."""
    if isinstance(message, NoteOn | NoteOff | ControlChange | ProgramChange | PitchBend):
        channel = _check("channel", message.channel, 0, 15, message)
        if isinstance(message, NoteOn):
            return [0x90 | channel, _check("note", message.note, 0, 127, message),
                    _check("velocity", message.velocity, 0, 127, message)]
        if isinstance(message, NoteOff):
            return [0x80 | channel, _check("note", message.note, 0, 127, message),
                    _check("velocity", message.velocity, 0, 127, message)]
        if isinstance(message, ControlChange):
            return [0xB0 | channel, _check("control", message.control, 0, 127, message),
                    _check("value", message.value, 0, 127, message)]
        if isinstance(message, ProgramChange):
            return [0xC0 | channel, _check("program", message.program, 0, 127, message)]
        value = _check("value", message.value, -8192, 8191, message) + 8192
        return [0xE0 | channel, value & 0x7F, value >> 7]
    if isinstance(message, ClockPulse):
        return [0xF8]
    if isinstance(message, ClockStart):
        return [0xFA]
    if isinstance(message, ClockContinue):
        return [0xFB]
    if isinstance(message, ClockStop):
        return [0xFC]
    if isinstance(message, SongPosition):
        position = _check("sixteenths", message.sixteenths, 0, 16383, message)
        return [0xF2, position & 0x7F, position >> 7]
    raise TypeError(f"cannot encode {type(message).__name__}: not a MIDI wire message")
