"""The note ledger: which (channel, pitch) keys are sounding, so that every note-on gets its note-off; and which
held controllers (pedals, mod wheel, pitch bend) were left away from rest, so that each gets its reset."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from companion.core.events import ControlChange, Note, NoteOff, PitchBend

# Controllers that keep changing the sound until they are set back (sustain, sostenuto and soft pedals, the mod
# wheel), with the value that sets them back; pitch bend rests at 0. A synth keeps them across note-offs, so ending
# the notes alone would leave every later note ringing on, bent or vibrating.
HELD_CONTROLS = {1: 0, 64: 0, 66: 0, 67: 0}


def _check(channel: int, pitch: int) -> None:
    if not (0 <= channel <= 15):
        raise ValueError(f"MIDI channel must be 0..15 (as on the wire), got {channel!r}")
    if not (0 <= pitch <= 127):
        raise ValueError(f"MIDI note number must be 0..127, got {pitch!r}")


class NoteLedger:
    """Counts outstanding note-ons per (channel, pitch).

    Policy: two note-ons of one key without a note-off in between need two `off()` calls before the key
    counts as silent (so overlapping voices that share a pitch are tracked honestly). On the wire, though,
    one note-off releases a key on nearly every synth, so `release_all()` and `release_channel()` send
    exactly one NoteOff per sounding key. A caller that prefers re-triggering (the scheduler does) checks
    the return value of `on()` and sends a note-off first.

    It also keeps the held controllers sent (`controller`), for `release_controllers` to set back at the end.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[int, int], int] = {}
        self._held: dict[tuple[int, int], int] = {}  # (channel, control or -1 for pitch bend) -> value sent

    def controller(self, message: ControlChange | PitchBend) -> None:
        """Note a controller value sent: a held controller away from rest is remembered until it rests again."""
        if isinstance(message, PitchBend):
            key, rest = (message.channel, -1), 0
        elif message.control in HELD_CONTROLS:
            key, rest = (message.channel, message.control), HELD_CONTROLS[message.control]
        else:
            return
        if message.value == rest:
            self._held.pop(key, None)
        else:
            self._held[key] = message.value

    def held_controllers(self) -> list[tuple[int, int]]:
        """(channel, control) of the controllers away from rest, sorted; control -1 is pitch bend."""
        return sorted(self._held)

    def release_controllers(self) -> list[ControlChange | PitchBend]:
        """Forget the held controllers and return the message that sets each back to rest (send them)."""
        resets: list[ControlChange | PitchBend] = [
            PitchBend(channel, 0) if control == -1 else ControlChange(channel, control, HELD_CONTROLS[control])
            for channel, control in sorted(self._held)]
        self._held.clear()
        return resets

    def on(self, channel: int, pitch: int) -> bool:
        """Record a note-on; returns True if the key was already sounding (a re-trigger)."""
        _check(channel, pitch)
        key = (channel, pitch)
        count = self._counts.get(key, 0)
        self._counts[key] = count + 1
        return count > 0

    def off(self, channel: int, pitch: int) -> bool:
        """Record a note-off; returns False for a note-off with no note-on (the caller counts it)."""
        key = (channel, pitch)
        count = self._counts.get(key, 0)
        if count == 0:
            return False
        if count == 1:
            del self._counts[key]
        else:
            self._counts[key] = count - 1
        return True

    def off_all_voices(self, channel: int, pitch: int) -> bool:
        """Forget every outstanding note-on of one key (we sent a note-off for it); False if none."""
        return self._counts.pop((channel, pitch), 0) > 0

    def is_sounding(self, channel: int, pitch: int) -> bool:
        return (channel, pitch) in self._counts

    def count(self, channel: int, pitch: int) -> int:
        """How many note-ons of this key are outstanding."""
        return self._counts.get((channel, pitch), 0)

    def sounding(self) -> list[tuple[int, int]]:
        """The sounding keys as (channel, pitch), sorted."""
        return sorted(self._counts)

    def channels(self) -> list[int]:
        """The channels with at least one sounding key, sorted."""
        return sorted({channel for channel, _ in self._counts})

    def release_all(self) -> list[NoteOff]:
        """Forget everything and return one NoteOff per sounding key (send them)."""
        offs = [NoteOff(channel, pitch) for channel, pitch in sorted(self._counts)]
        self._counts.clear()
        return offs

    def release_channel(self, channel: int) -> list[NoteOff]:
        """Like `release_all`, for one channel."""
        keys = sorted(key for key in self._counts if key[0] == channel)
        for key in keys:
            del self._counts[key]
        return [NoteOff(channel, pitch) for channel, pitch in keys]

    def __len__(self) -> int:
        """The number of sounding keys."""
        return len(self._counts)

    def __contains__(self, key: object) -> bool:
        return key in self._counts

    def __bool__(self) -> bool:
        return bool(self._counts)


def without_overlaps(notes: Iterable[Note]) -> list[Note]:
    """The notes as a synth hears them when they are played in order: a note struck again on its channel while
    it sounds ends where the new one starts (the scheduler's re-strike, applied to a list for files); a note left
    with no length is dropped. Never two sounding notes of one key, so no DAW cuts one short or hangs it.

    Order: by start; notes starting together keep the order given (the later one is the one struck last)."""
    ordered = sorted(enumerate(notes), key=lambda item: (item[1].start_ticks, item[0]))
    kept: list[Note | None] = []
    sounding: dict[tuple[int, int], int] = {}  # key -> index in `kept` of the note that sounds
    for _, note in ordered:
        key = (note.channel, note.pitch)
        earlier = sounding.get(key)
        if earlier is not None and kept[earlier] is not None and kept[earlier].end_ticks > note.start_ticks:
            cut = kept[earlier].start_ticks
            kept[earlier] = replace(kept[earlier], duration_ticks=note.start_ticks - cut) \
                if note.start_ticks > cut else None
        sounding[key] = len(kept)
        kept.append(note if note.duration_ticks > 0 else None)
    return [note for note in kept if note is not None]


def notes_from_wire(events: Iterable[tuple[int, Sequence[int]]], to_ticks: Callable[[int], int],
                    ) -> tuple[list[Note], list[Note]]:
    """Pair (time_ns, bytes) note messages into notes in ticks: (closed notes, notes still sounding at the end).

    A repeated note-on of a sounding key closes the earlier note first; a still-sounding note has duration 0.
    """
    closed: list[Note] = []
    open_at: dict[tuple[int, int], tuple[int, int]] = {}
    for time_ns, data in events:
        if len(data) < 3 or data[0] & 0xF0 not in (0x80, 0x90):
            continue
        key = (data[0] & 0x0F, data[1])
        ticks = to_ticks(time_ns)
        if key in open_at:
            start, velocity = open_at.pop(key)
            closed.append(Note(key[1], velocity, start, max(1, ticks - start), key[0]))
        if data[0] & 0xF0 == 0x90 and data[2] > 0:
            open_at[key] = (ticks, data[2])
    sounding = [Note(pitch, velocity, start, 0, channel) for (channel, pitch), (start, velocity) in open_at.items()]
    return closed, sounding
