"""MIDI messages, notes, phrases and engine commands as frozen dataclasses; musical time in integer ticks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PPQ = 480
"""Ticks per quarter note. 480 holds 16ths (120), 16th triplets (80) and 32nds (60) exactly."""

TICKS_PER_16TH = PPQ // 4
CLOCK_PULSES_PER_QUARTER = 24
TICKS_PER_CLOCK_PULSE = PPQ // CLOCK_PULSES_PER_QUARTER


# --- channel messages (channel is 0..15, as on the wire) -------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteOn:
    channel: int
    note: int
    velocity: int


@dataclass(frozen=True, slots=True)
class NoteOff:
    channel: int
    note: int
    velocity: int = 0


@dataclass(frozen=True, slots=True)
class ControlChange:
    channel: int
    control: int
    value: int


@dataclass(frozen=True, slots=True)
class ProgramChange:
    channel: int
    program: int


@dataclass(frozen=True, slots=True)
class PitchBend:
    channel: int
    value: int  # -8192..8191


# --- system real-time and common messages ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClockPulse:
    """F8: 24 per quarter note."""


@dataclass(frozen=True, slots=True)
class ClockStart:
    """FA: start from the top of the song."""


@dataclass(frozen=True, slots=True)
class ClockContinue:
    """FB: continue from the current song position."""


@dataclass(frozen=True, slots=True)
class ClockStop:
    """FC: transport stopped."""


@dataclass(frozen=True, slots=True)
class SongPosition:
    """F2: song position in MIDI beats (16th notes) from the start of the song."""

    sixteenths: int


ChannelMessage = NoteOn | NoteOff | ControlChange | ProgramChange | PitchBend
ClockMessage = ClockPulse | ClockStart | ClockContinue | ClockStop | SongPosition
Message = ChannelMessage | ClockMessage

# Controller numbers that mean something to the engine.
CC_SUSTAIN = 64
CC_ALL_SOUND_OFF = 120
CC_ALL_NOTES_OFF = 123


# --- notes and phrases in musical time -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Note:
    """A note in musical time: absolute ticks from the clock's origin (bar 1, beat 1 = tick 0)."""

    pitch: int
    velocity: int
    start_ticks: int
    duration_ticks: int
    channel: int = 0

    @property
    def end_ticks(self) -> int:
        return self.start_ticks + self.duration_ticks


@dataclass(frozen=True, slots=True)
class Phrase:
    """A captured phrase: the notes with the player's exact offsets, and the span it was captured in.

    `start_ticks` is the bar line at or before the first note, so `note.start_ticks - start_ticks` is the
    position in the phrase relative to the bar grid; `end_ticks` is when the phrase was judged ended.
    """

    notes: tuple[Note, ...]
    start_ticks: int
    end_ticks: int
    bar_ticks: int = 4 * PPQ

    @property
    def length_ticks(self) -> int:
        return self.end_ticks - self.start_ticks


# --- commands from the engine to the runtime -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendNow:
    """Send a message at once (MIDI thru, harmony under a live note)."""

    message: ChannelMessage
    tag: str = "thru"


@dataclass(frozen=True, slots=True)
class ScheduleNotes:
    """Play these notes at their absolute ticks; `tag` groups them so they can be cancelled together."""

    notes: tuple[Note, ...]
    tag: str


@dataclass(frozen=True, slots=True)
class RequestAnswer:
    """Ask the generator worker for an answer to `phrase`, to be played in [start_ticks, end_ticks)."""

    phrase: Phrase
    start_ticks: int
    end_ticks: int
    tag: str
    seed: int
    key: tuple[int, str] | None = None  # (tonic pitch class, "major"|"minor"), if known
    settings: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop the notes of `tag` from `from_ticks` on: "stop" ends them, "duck" lowers their velocity."""

    tag: str
    from_ticks: int
    how: str = "stop"


@dataclass(frozen=True, slots=True)
class Panic:
    """All notes off, now, on every channel we sounded."""

    reason: str = "panic"


@dataclass(frozen=True, slots=True)
class Log:
    level: str  # "info" | "warning" | "error"
    text: str


# --- harmony under live notes (harmonize mode; the runtime's harmony worker runs the model) ---------


@dataclass(frozen=True, slots=True)
class HarmonizeNote:
    """A melody note-on in harmonize mode: voice it at once, under the note (the harmony worker runs the model).

    `step_index` is the 16th step (counted from tick 0) the note is quantized to for the model, or None when
    the note is an ornament inside steps already taken (the harmony then holds). `may_change` is True on a
    chord-change boundary (`change_every`); off one, a sounding chord holds unless the melody clashes with it.
    """

    pitch: int
    velocity: int
    channel: int  # the player's channel
    now_ticks: int
    step_index: int | None
    may_change: bool = True
    key_pcs: frozenset[int] | None = None  # pitch classes the voices may use (key lock); None: no lock
    chord_pcs: frozenset[int] | None = None  # the chord the player holds on `chord_channel`: steers the voices
    settings: Any = field(default=None, compare=False, hash=False)  # the EngineSettings in force (style, channels)


@dataclass(frozen=True, slots=True)
class HarmonyStep:
    """A 16th step passed with no new melody note: the model advances with `soprano` (held, or the last pitch).

    `holding` is True while the melody note still sounds: on a change boundary the harmony may then move
    where the model moves a voice; otherwise the step only keeps the model in time.
    """

    step_index: int
    soprano: int
    holding: bool
    may_change: bool
    key_pcs: frozenset[int] | None = None
    chord_pcs: frozenset[int] | None = None
    settings: Any = field(default=None, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class ReleaseHarmony:
    """The melody note under the harmony ended: note-offs for the harmony under it."""

    pitch: int
    now_ticks: int


@dataclass(frozen=True, slots=True)
class StopHarmony:
    """Silence the harmony and end the piece (mode or settings change, panic, transport stop, a long rest)."""

    now_ticks: int
    reason: str = "stop"


HarmonyCommand = HarmonizeNote | HarmonyStep | ReleaseHarmony | StopHarmony
Command = SendNow | ScheduleNotes | RequestAnswer | Cancel | Panic | Log | HarmonyCommand
