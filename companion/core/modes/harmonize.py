"""Harmonize: each melody note-on is voiced at once by the harmony worker; the model follows the 16th grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from companion.core.events import (
    CC_SUSTAIN,
    PPQ,
    TICKS_PER_16TH,
    Cancel,
    ChannelMessage,
    Command,
    ControlChange,
    HarmonizeNote,
    HarmonyStep,
    Log,
    NoteOff,
    NoteOn,
    ReleaseHarmony,
    StopHarmony,
)
from companion.core.modes.base import Mode, ModeContext
from companion.core.settings import CLOCK_STYLES
from companion.core.theory import Key

HARMONY_TAG = "harmony"
"""The scheduler tag of every harmony note (sent at once with `send_now`, so the ledger closes them)."""
STEP_TICKS = TICKS_PER_16TH
HALF_STEP_TICKS = STEP_TICKS // 2
CHORD_WINDOW_TICKS = PPQ // 8
"""Notes starting within a 32nd of the melody note form a chord with it: the top note is the melody."""
MAX_ORNAMENT_STEPS = 4
"""Notes crowding this many steps ahead of the grid are ornaments; further ahead means the clock moved back."""
MAX_PULSES_BEHIND = 4
"""A clock style's pulses this far behind (a stalled engine, a relocation) are skipped, not played in a burst."""
MAX_BEHIND_BARS = 2
"""If the engine falls this far behind the grid (a stalled machine), the piece restarts at the next note."""
LATE_CHORD_TICKS = STEP_TICKS
"""A left-hand chord this soon after the melody note (hands together, the left a little late) re-voices it."""

Steering = tuple[frozenset[int] | None, frozenset[int] | None]  # (key lock, left-hand chord) pitch classes


@dataclass(frozen=True, slots=True)
class SteerHarmony(HarmonyStep):
    """The steering changed between melody notes (a chord on `chord_channel`, a new key estimate): the
    harmony worker rebuilds the coming step's chords for it at once, so the next melody note is still a lookup.

    No step passes: `step_index` is the step in progress and `soprano` the pitch the model hears there (-1
    between pieces). It is a HarmonyStep only so that the runtime hands it to the harmony worker with the other
    harmony commands (`events.HarmonyCommand`); the worker takes it before any HarmonyStep.
    """


@dataclass(frozen=True, slots=True)
class HarmonyPulse(HarmonyStep):
    """A 16th line of the clock passed while a clock style (comping, arpeggio) plays: the worker strikes what
    the style plays there. Sent the engine tick the line passes, not when its quantization window closes; the
    model does not advance (HarmonyStep does that). A HarmonyStep only so that the runtime hands it over."""


@dataclass(frozen=True, slots=True)
class RevoiceNote(HarmonizeNote):
    """The melody note just voiced, again, with the chord the left hand played within LATE_CHORD_TICKS after it
    (hands together, the left a little late): the worker re-voices the sounding harmony as if the chord had come
    with the note. `now_ticks` is when the chord came. A HarmonizeNote, so that the runtime hands it to the
    worker (and an offline render records its notes at `now_ticks`); the worker takes it before HarmonizeNote.
    """


@dataclass(slots=True)
class _Melody:
    pitch: int
    channel: int
    start_ticks: int
    velocity: int = 64
    step: int | None = None  # the 16th step the model heard it on (None: an ornament)
    may_change: bool = False  # it could change the chord (a late left-hand chord may then re-voice it)
    key_up: bool = False  # the key was released but the sustain pedal still holds the note


def change_ticks(ctx: ModeContext) -> int:
    """The chord-change grid of `change_every`: a beat, half a bar (in whole beats) or a bar.

    The chord changes at most this often, with one exception: a melody note between lines that clashes with
    the held chord (a semitone rub, or a voice at or above the melody) has it re-voiced by the worker at once,
    a clash guard (HarmonyWorker._on_note)."""
    every = ctx.settings.change_every  # "melody": the model is asked on every beat and holds where it may
    if every == "bar":
        return ctx.bar_ticks
    if every == "half_bar":
        return max(1, ctx.settings.beats_per_bar // 2) * ctx.beat_ticks
    return ctx.beat_ticks


class HarmonizeMode(Mode):
    """Melody in, harmony commands out; the harmony worker (runtime side) runs the model and sends the notes.

    The melody is quantized to the 16th grid for the model: step k owns the note-ons in
    [k*120 - 60, k*120 + 60) ticks, and once that window has passed without a note the mode hands the
    step to the model as held (the melody note still sounds) or resting (the model hears the last pitch,
    as chorales have no rests). A bar of rest ends the piece; the next note starts a fresh one.
    """

    name = "harmonize"

    def __init__(self) -> None:
        self._melody: _Melody | None = None
        self._last_pitch: int | None = None  # what the model hears while the melody rests
        self._next_step: int | None = None  # the next 16th step for the model; None: no piece in progress
        self._rest_steps = 0
        self._change_step: int | None = None  # the step of the last chord change (or chance of one)
        self._pulse_step: int | None = None  # the next 16th line a clock style strikes on
        self._pedal = False
        self._chord: set[int] = set()  # pitches held on `chord_channel`
        self._key_cache: tuple[str, frozenset[int]] | None = None
        self._steering: Steering | None = None  # last sent to the worker
        self.voiced = 0
        self.ornaments = 0
        self.inner_notes = 0
        self.pieces = 0

    # --- the player's MIDI ------------------------------------------------------------------------------

    def handle(
        self, message: ChannelMessage, now_ticks: int, ctx: ModeContext, player_note_on: bool
    ) -> list[Command]:
        settings = ctx.settings
        if settings.chord_channel is not None and getattr(message, "channel", None) == settings.chord_channel:
            if isinstance(message, NoteOn) and message.velocity > 0:
                self._chord.add(message.note)
            elif isinstance(message, NoteOff | NoteOn):
                self._chord.discard(message.note)
            return self._late_chord(now_ticks, ctx) or self._steer(now_ticks, ctx)  # it steers; never melody
        if isinstance(message, ControlChange) and message.control == CC_SUSTAIN:
            self._pedal = message.value >= 64
            melody = self._melody
            if not self._pedal and melody is not None and melody.key_up:
                return self._release(now_ticks)
            return []
        if isinstance(message, NoteOn) and message.velocity > 0:
            return self._note_on(message, now_ticks, ctx) if player_note_on else []
        if isinstance(message, NoteOff | NoteOn):  # a note-off (or a note-on with velocity 0)
            melody = self._melody
            if melody is None or message.note != melody.pitch or message.channel != melody.channel:
                return []  # a legato note already replaced, or a chord tone under the melody
            if self._pedal:
                melody.key_up = True
                return []
            return self._release(now_ticks)
        return []

    def _note_on(self, message: NoteOn, now_ticks: int, ctx: ModeContext) -> list[Command]:
        melody = self._melody
        if melody is not None and now_ticks - melody.start_ticks < CHORD_WINDOW_TICKS and message.note < melody.pitch:
            self.inner_notes += 1
            return []  # played with the melody note and below it: the player's own chord tone
        commands = self._catch_up(now_ticks, ctx)
        quantized = (now_ticks + HALF_STEP_TICKS) // STEP_TICKS
        if self._next_step is not None and self._next_step > quantized + MAX_ORNAMENT_STEPS:
            commands += self._end_piece(now_ticks, "the clock moved back")  # a DAW relocated: start afresh here
        step: int | None
        new_piece = self._next_step is None
        if new_piece:
            step = quantized  # a new piece starts on this note's step
            self._pulse_step = step + 1  # the note strikes its own step
            self.pieces += 1
        elif quantized >= self._next_step:
            step = quantized
        elif self._next_step <= quantized + 1:
            step = self._next_step  # a second note inside one step: the model hears it a 16th later
        else:
            step = None  # a fast ornament: the harmony holds under it
            self.ornaments += 1
        if step is not None:
            self._next_step = step + 1
        self._last_pitch = message.note
        self._rest_steps = 0
        self.voiced += 1
        may_change = new_piece or (step is not None and self._may_change(step, ctx))
        if may_change and step is not None:
            self._change_step = step
        self._melody = _Melody(message.note, message.channel, now_ticks, message.velocity, step, may_change)
        key_pcs, chord_pcs = self._steering = self._steering_now(ctx)
        commands.append(HarmonizeNote(message.note, message.velocity, message.channel, now_ticks, step, may_change,
                                      key_pcs, chord_pcs, ctx.settings))
        return commands

    def _release(self, now_ticks: int) -> list[Command]:
        melody = self._melody
        self._melody = None
        return [ReleaseHarmony(melody.pitch, now_ticks)] if melody is not None else []

    # --- time ---------------------------------------------------------------------------------------------

    def tick(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        commands = self._catch_up(now_ticks, ctx)
        return commands + self._steer(now_ticks, ctx) + self._pulses(now_ticks, ctx)  # a new key estimate too

    def _pulses(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        """Clock styles: a HarmonyPulse for each 16th line passed since the last (at most MAX_PULSES_BEHIND)."""
        if self._pulse_step is None or ctx.settings.harmony_style not in CLOCK_STYLES:
            return []
        self._pulse_step = max(self._pulse_step, now_ticks // STEP_TICKS - MAX_PULSES_BEHIND)
        commands: list[Command] = []
        while self._pulse_step * STEP_TICKS <= now_ticks:
            melody = self._melody
            soprano = melody.pitch if melody is not None else (self._last_pitch or -1)
            commands.append(HarmonyPulse(self._pulse_step, soprano, melody is not None, False, None, None,
                                         ctx.settings))
            self._pulse_step += 1
        return commands

    def _catch_up(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        """Hand the model every step whose quantization window has closed with no note in it."""
        if self._next_step is None or self._last_pitch is None:
            return []
        if now_ticks - self._next_step * STEP_TICKS > MAX_BEHIND_BARS * ctx.bar_ticks:
            return self._end_piece(now_ticks, "the engine fell behind the clock")
        commands: list[Command] = []
        rest_limit = ctx.bar_ticks // STEP_TICKS
        every = change_ticks(ctx)
        steering = self._steering_now(ctx)
        while self._next_step * STEP_TICKS + HALF_STEP_TICKS <= now_ticks:
            step = self._next_step
            melody = self._melody
            if melody is None:
                self._rest_steps += 1
                if self._rest_steps > rest_limit:
                    return commands + self._end_piece(now_ticks, "rest")
            may_change = (step * STEP_TICKS) % every == 0
            if may_change and melody is not None:
                self._change_step = step  # the model may move a voice here under the held note
            soprano = melody.pitch if melody is not None else self._last_pitch
            commands.append(HarmonyStep(step, soprano, melody is not None, may_change, *steering, ctx.settings))
            self._next_step = step + 1
            self._steering = steering
        return commands

    def _may_change(self, step: int, ctx: ModeContext) -> bool:
        """On a change line, or the first note since one: between lines the chord stays, however the melody
        is articulated (a detached note finds the chord of its change period again)."""
        every = change_ticks(ctx)
        if (step * STEP_TICKS) % every == 0 or self._change_step is None:
            return True
        return (step * STEP_TICKS) // every > (self._change_step * STEP_TICKS) // every

    def _end_piece(self, now_ticks: int, reason: str) -> list[Command]:
        self._next_step = None
        self._pulse_step = None
        self._change_step = None
        self._last_pitch = None
        self._rest_steps = 0
        return [StopHarmony(now_ticks, reason)]

    # --- what steers the voices -----------------------------------------------------------------------------

    def _late_chord(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        """A new left-hand chord within LATE_CHORD_TICKS of a melody note that could change the chord, before
        the model's next step: that note again, to be re-voiced under it. Letting go of the chord re-voices
        nothing (the harmony played stays)."""
        melody = self._melody
        if (melody is None or not melody.may_change or melody.step is None or not self._chord
                or self._next_step != melody.step + 1 or now_ticks - melody.start_ticks > LATE_CHORD_TICKS):
            return []
        steering = self._new_steering(ctx)
        if steering is None:
            return []
        return [RevoiceNote(melody.pitch, melody.velocity, melody.channel, now_ticks, melody.step, True, *steering,
                            ctx.settings)]

    def _steer(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        """Tell the worker as soon as the steering changes, not on the next note: it rebuilds its chords then."""
        steering = self._new_steering(ctx)
        if steering is None:
            return []
        melody = self._melody
        heard = melody.pitch if melody is not None else self._last_pitch
        step = self._next_step - 1 if self._next_step is not None else (now_ticks + HALF_STEP_TICKS) // STEP_TICKS
        return [SteerHarmony(step, -1 if heard is None else heard, melody is not None, False, *steering, ctx.settings)]

    def _steering_now(self, ctx: ModeContext) -> Steering:
        return self._key_pcs(ctx), self._chord_pcs()

    def _new_steering(self, ctx: ModeContext) -> Steering | None:
        """The steering now if the worker has not been told it yet (it is noted as told), else None."""
        steering = self._steering_now(ctx)
        if steering == self._steering:
            return None
        self._steering = steering
        return steering

    def _key_pcs(self, ctx: ModeContext) -> frozenset[int] | None:
        settings = ctx.settings
        if not settings.key_lock:
            return None
        if settings.key is not None:
            if self._key_cache is None or self._key_cache[0] != settings.key:
                self._key_cache = (settings.key, Key.parse(settings.key).scale_pitch_classes)
            return self._key_cache[1]
        return ctx.key.scale_pitch_classes if ctx.key is not None else None

    def _chord_pcs(self) -> frozenset[int] | None:
        return frozenset(p % 12 for p in self._chord) if self._chord else None

    # --- the engine's calls ---------------------------------------------------------------------------------

    def cancel(self, now_ticks: int, how: str = "stop") -> list[Command]:
        active = self._next_step is not None or self._melody is not None
        self._melody = None
        self._pedal = False
        self._chord.clear()
        self._end_piece(now_ticks, "stop")
        # The worker silences what it sounded; the scheduler's cancel ends the tag at once even if it is busy.
        return [StopHarmony(now_ticks, "stop"), Cancel(HARMONY_TAG, now_ticks, "stop")] if active else []

    def regenerate(self, now_ticks: int, ctx: ModeContext, new_seed: bool) -> list[Command]:
        return [Log("info", "harmonize voices each note as you play it: there is no take to regenerate")]

    def snapshot(self, now_ticks: int) -> dict[str, Any]:
        return {
            "harmonizing": self._melody is not None,
            "melody_pitch": self._melody.pitch if self._melody is not None else None,
            "harmony_notes": self.voiced,
            "ornaments": self.ornaments,
            "chord_held": sorted(self._chord),
        }


MODE = HarmonizeMode
