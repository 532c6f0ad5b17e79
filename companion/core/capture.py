"""Phrase capture: feed the player's MIDI with tick stamps, get a Phrase when the phrase ends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from companion.core.events import (
    CC_ALL_NOTES_OFF,
    CC_ALL_SOUND_OFF,
    CC_SUSTAIN,
    PPQ,
    ControlChange,
    Message,
    Note,
    NoteOff,
    NoteOn,
    Phrase,
)


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """How a phrase is heard and when it ends.

    input_channel: listen to this channel only (0..15), None = every channel (omni).
    silence_beats: the phrase ends after this many beats with no key down and the pedal up.
    max_bars: the phrase ends when it has lasted this many bars (from the bar line before its first
        note); notes still held are cut there. None = no limit.
    trigger_cc: a controller whose value >= 64 ends the phrase at once (a foot switch). It takes
        precedence over the sustain meaning of CC64 if you pick 64.
    trigger_note: a note whose note-on ends the phrase at once; it is not part of the phrase.
    beats_per_bar, beat_ticks: the meter (beat_ticks = PPQ in x/4, PPQ // 2 in x/8).
    """

    input_channel: int | None = None
    silence_beats: float = 2.0
    max_bars: int | None = None
    trigger_cc: int | None = None
    trigger_note: int | None = None
    beats_per_bar: int = 4
    beat_ticks: int = PPQ

    def __post_init__(self) -> None:
        if self.input_channel is not None and not (0 <= self.input_channel <= 15):
            raise ValueError(f"input_channel must be 0..15 or None (omni), got {self.input_channel!r}")
        if not (self.silence_beats > 0):
            raise ValueError(f"silence_beats must be more than 0, got {self.silence_beats!r}")
        if self.max_bars is not None and self.max_bars < 1:
            raise ValueError(f"max_bars must be at least 1 or None, got {self.max_bars!r}")
        for name in ("trigger_cc", "trigger_note"):
            value = getattr(self, name)
            if value is not None and not (0 <= value <= 127):
                raise ValueError(f"{name} must be 0..127 or None, got {value!r}")
        if self.beats_per_bar < 1 or self.beat_ticks < 1:
            raise ValueError("beats_per_bar and beat_ticks must be at least 1")

    @property
    def bar_ticks(self) -> int:
        return self.beats_per_bar * self.beat_ticks

    @property
    def silence_ticks(self) -> int:
        return max(1, round(self.silence_beats * self.beat_ticks))


@dataclass(slots=True)
class _Open:
    start_ticks: int
    velocity: int
    key_down: bool  # False: the key is up but the sustain pedal holds the note


class PhraseCapture:
    """Polyphonic phrase capture with sustain pedal, channel filter, silence / bar-count / trigger endings.

    Notes keep the player's exact absolute ticks. A re-struck key that is still sounding ends the old note
    at the new onset. Stray note-offs are ignored and counted in `ignored`; messages on other channels are
    counted in `filtered`. Note-offs of keys we already cut (phrase ended while held, the trigger note) are
    absorbed silently.
    """

    def __init__(self, settings: CaptureSettings | None = None) -> None:
        self.settings = settings or CaptureSettings()  # may be replaced between calls; read at each call
        self._open: dict[tuple[int, int], _Open] = {}
        self._done: list[Note] = []
        self._pedal_down: set[int] = set()
        self._absorb: set[tuple[int, int]] = set()
        self._first_onset_ticks: int | None = None
        self._silent_since_ticks: int | None = None
        self._last_onset_ticks: int | None = None
        self._now_ticks = 0
        self.ignored = 0
        self.filtered = 0
        self.note_ons = 0
        self.phrases = 0

    # --- state -------------------------------------------------------------------------------------

    @property
    def in_progress(self) -> bool:
        """A phrase has begun (at least one note) and has not ended yet."""
        return self._first_onset_ticks is not None

    @property
    def player_active(self) -> bool:
        """A key or the pedal is down, or a note began within the last beat (as of the latest call)."""
        if self._pedal_down or self._absorb or any(o.key_down for o in self._open.values()):
            return True
        last = self._last_onset_ticks
        return last is not None and self._now_ticks - last < self.settings.beat_ticks

    def reset(self) -> None:
        """Drop the phrase in progress; keys still down are remembered so their note-offs are not strays."""
        self._absorb.update(key for key, held in self._open.items() if held.key_down)
        self._open.clear()
        self._done.clear()
        self._first_onset_ticks = None
        self._silent_since_ticks = None

    # --- input -------------------------------------------------------------------------------------

    def poll(self, now_ticks: int) -> Phrase | None:
        """End the phrase if its silence or its bar count ran out by `now_ticks`."""
        self._now_ticks = max(self._now_ticks, now_ticks)
        if self._first_onset_ticks is None:
            return None
        settings = self.settings
        deadlines: list[int] = []
        if self._silent_since_ticks is not None and not self._pedal_down:
            deadlines.append(self._silent_since_ticks + settings.silence_ticks)
        if settings.max_bars is not None:
            deadlines.append(self._phrase_start_ticks() + settings.max_bars * settings.bar_ticks)
        if deadlines and now_ticks >= min(deadlines):
            return self._end_phrase(min(deadlines))
        return None

    def feed(self, message: Message, now_ticks: int) -> Phrase | None:
        """Take one message stamped `now_ticks`; returns the phrase it ended, if any.

        A phrase that was already due (silence or bar count) is closed first, so a note that arrives
        after a missed poll starts the next phrase instead of joining the old one.
        """
        ended = self.poll(now_ticks)
        if not isinstance(message, NoteOn | NoteOff | ControlChange):
            return ended  # pitch bend, program change, clock: not part of a phrase
        settings = self.settings
        if settings.input_channel is not None and message.channel != settings.input_channel:
            self.filtered += 1
            return ended
        if isinstance(message, NoteOn) and message.velocity > 0:
            triggered = self._note_on(message.channel, message.note, message.velocity, now_ticks)
        elif isinstance(message, NoteOn | NoteOff):
            triggered = self._note_off(message.channel, message.note, now_ticks)
        else:
            triggered = self._control(message, now_ticks)
        return ended or triggered

    def _note_on(self, channel: int, pitch: int, velocity: int, now_ticks: int) -> Phrase | None:
        key = (channel, pitch)
        if pitch == self.settings.trigger_note:
            self._absorb.add(key)
            return self._end_phrase(now_ticks) if self.in_progress else None
        self._absorb.discard(key)
        old = self._open.pop(key, None)
        if old is not None:
            self._close(key, old, now_ticks)
        self._open[key] = _Open(now_ticks, velocity, key_down=True)
        if self._first_onset_ticks is None:
            self._first_onset_ticks = now_ticks
        self._last_onset_ticks = now_ticks
        self._silent_since_ticks = None
        self.note_ons += 1
        return None

    def _note_off(self, channel: int, pitch: int, now_ticks: int) -> None:
        key = (channel, pitch)
        if key in self._absorb:
            self._absorb.discard(key)
            return None
        held = self._open.get(key)
        if held is None or not held.key_down:
            self.ignored += 1
            return None
        if channel in self._pedal_down:
            held.key_down = False
            return None
        del self._open[key]
        self._close(key, held, now_ticks)
        self._mark_silence(now_ticks)
        return None

    def _control(self, message: ControlChange, now_ticks: int) -> Phrase | None:
        if message.control == self.settings.trigger_cc:
            if message.value >= 64 and self.in_progress:
                return self._end_phrase(now_ticks)
            return None
        if message.control == CC_SUSTAIN:
            if message.value >= 64:
                self._pedal_down.add(message.channel)
            else:
                self._pedal_down.discard(message.channel)
                self._release_sustained(lambda key: key[0] == message.channel, now_ticks)
        elif message.control in (CC_ALL_NOTES_OFF, CC_ALL_SOUND_OFF):
            self._pedal_down.discard(message.channel)
            self._release_sustained(lambda key: key[0] == message.channel, now_ticks, keys_too=True)
        return None

    # --- bookkeeping -------------------------------------------------------------------------------

    def _release_sustained(
        self, on_channel: Callable[[tuple[int, int]], bool], now_ticks: int, keys_too: bool = False
    ) -> None:
        for key in [k for k, held in self._open.items() if on_channel(k) and (keys_too or not held.key_down)]:
            self._close(key, self._open.pop(key), now_ticks)
        self._mark_silence(now_ticks)

    def _mark_silence(self, now_ticks: int) -> None:
        if not self._open and self._first_onset_ticks is not None:
            self._silent_since_ticks = now_ticks

    def _close(self, key: tuple[int, int], held: _Open, end_ticks: int) -> None:
        duration = max(1, end_ticks - held.start_ticks)
        self._done.append(Note(key[1], held.velocity, held.start_ticks, duration, key[0]))

    def _phrase_start_ticks(self) -> int:
        assert self._first_onset_ticks is not None
        bar = self.settings.bar_ticks
        return (self._first_onset_ticks // bar) * bar

    def _end_phrase(self, end_ticks: int) -> Phrase:
        """Close the phrase at `end_ticks`: held notes are cut there (and their keys' note-offs absorbed)."""
        for key, held in self._open.items():
            self._close(key, held, end_ticks)
            if held.key_down:
                self._absorb.add(key)
        self._open.clear()
        notes = tuple(sorted(self._done, key=lambda n: (n.start_ticks, n.pitch, n.channel)))
        phrase = Phrase(notes, self._phrase_start_ticks(), end_ticks, self.settings.bar_ticks)
        self._done.clear()
        self._first_onset_ticks = None
        self._silent_since_ticks = None
        self.phrases += 1
        return phrase
