"""The pure engine: routes the player's MIDI and the user's intents to phrase capture and the current mode."""

from __future__ import annotations

import dataclasses
import importlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from companion.core import modes as modes_package
from companion.core.capture import PhraseCapture
from companion.core.events import (
    CC_ALL_NOTES_OFF,
    CC_ALL_SOUND_OFF,
    ClockStart,
    ClockStop,
    Command,
    ControlChange,
    Log,
    Message,
    NoteOff,
    NoteOn,
    Panic,
    Phrase,
    PitchBend,
    ProgramChange,
    SendNow,
)
from companion.core.modes.base import Mode, ModeContext
from companion.core.settings import EngineSettings, available_modes  # part of the engine's interface too
from companion.core.theory import Key, estimate_key

# Settings that only shape what comes in, not what is playing: changing them keeps the current answer.
_INPUT_ONLY_SETTINGS = {
    "input_channel",
    "thru",
    "thru_channel",
    "silence_beats",
    "max_bars",
    "trigger_cc",
    "trigger_note",
    "on_player_resume",
}
_KEY_MEMORY_NOTES = 256  # the key estimate follows the last few phrases, not the whole night


def create_mode(name: str) -> Mode:
    """Instantiate the mode `name`; ValueError listing the modes that exist."""
    if name not in available_modes():
        raise ValueError(f"unknown mode {name!r}; available: {', '.join(available_modes())}")
    module = importlib.import_module(f"{modes_package.__name__}.{name}")
    return module.MODE()


# --- intents from the UI or from MIDI control --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetMode:
    name: str


@dataclass(frozen=True, slots=True)
class ChangeSettings:
    changes: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class PanicIntent:
    pass


@dataclass(frozen=True, slots=True)
class Regenerate:
    new_seed: bool = True


@dataclass(frozen=True, slots=True)
class StorePhrase:
    """Keep the last phrase played as an end of a morph (morph mode: A, then B)."""


Intent = SetMode | ChangeSettings | PanicIntent | Regenerate | StorePhrase


class Engine:
    """Pure and single-threaded: messages, ticks and intents in, commands out."""

    def __init__(self, settings: EngineSettings | None = None) -> None:
        self.settings = settings or EngineSettings()
        self.capture = PhraseCapture(self.settings.capture_settings())
        self.mode: Mode = create_mode(self.settings.mode)
        self.key: Key | None = None  # estimated from the player's phrases
        self._set_key: tuple[str, Key] | None = None  # the settings' key, parsed once
        self.last_phrase: Phrase | None = None
        self._key_notes: deque[tuple[int, float]] = deque(maxlen=_KEY_MEMORY_NOTES)
        self._answer_count = 0
        self._now_ticks = 0
        self._last_panic_ticks: int | None = None
        self.counters: dict[str, int] = {"messages": 0, "phrases": 0, "panics": 0, "program_changes": 0}

    def _next_answer_index(self) -> int:
        self._answer_count += 1
        return self._answer_count

    def _context(self) -> ModeContext:
        s = self.settings
        return ModeContext(s, self._key_in_use(), s.beat_ticks, s.bar_ticks, self._next_answer_index)

    def _key_in_use(self) -> Key | None:
        """The settings' key when one is set, else the key estimated from the phrases so far."""
        name = self.settings.key
        if name is None:
            return self.key
        if self._set_key is None or self._set_key[0] != name:
            self._set_key = (name, Key.parse(name))  # checked when the settings were made
        return self._set_key[1]

    # --- MIDI from the player ----------------------------------------------------------------------

    def handle(self, message: Message, now_ticks: int) -> list[Command]:
        """One message from the wire, stamped with the tick it arrived at."""
        self._now_ticks = max(self._now_ticks, now_ticks)
        self.counters["messages"] += 1
        if isinstance(message, ClockStop):
            # Transport stopped: nothing should keep playing, and a half phrase is not a call.
            self.capture.reset()
            return self.mode.cancel(now_ticks, "stop")
        if isinstance(message, ClockStart):  # bar 1 is now (the clock has taken the Start already)
            return self.mode.transport_start(now_ticks, self._context())
        if isinstance(message, ProgramChange):
            self.counters["program_changes"] += 1  # presets will map these later; ignored for now
            return self._poll(now_ticks)
        if not isinstance(message, NoteOn | NoteOff | ControlChange | PitchBend):
            return []  # pulses, start, continue, song position: the clock's business
        settings = self.settings
        accepted = settings.input_channel is None or message.channel == settings.input_channel
        if (
            accepted
            and isinstance(message, ControlChange)
            and message.control
            in (
                CC_ALL_SOUND_OFF,
                CC_ALL_NOTES_OFF,
            )
            and message.control != settings.trigger_cc
        ):
            self.capture.feed(message, now_ticks)
            return self._panic(now_ticks, f"the player sent CC{message.control}")
        commands: list[Command] = []
        if accepted and settings.thru and not self._is_trigger(message):
            channel = settings.thru_channel if settings.thru_channel is not None else settings.output_channel
            commands.append(SendNow(dataclasses.replace(message, channel=channel)))
        note_ons_before = self.capture.note_ons
        phrase = self.capture.feed(message, now_ticks)
        if phrase is not None:
            commands += self._phrase_ended(phrase, now_ticks, self._context())
        if accepted:
            played = self.capture.note_ons > note_ons_before
            commands += self.mode.handle(message, now_ticks, self._context(), played)
        return commands

    def _is_trigger(self, message: NoteOn | NoteOff | ControlChange | PitchBend) -> bool:
        if isinstance(message, NoteOn | NoteOff):
            return message.note == self.settings.trigger_note
        if isinstance(message, ControlChange):
            return message.control == self.settings.trigger_cc
        return False

    def tick(self, now_ticks: int) -> list[Command]:
        """Called often by the engine thread: ends phrases on silence or bar count; the mode keeps time."""
        self._now_ticks = max(self._now_ticks, now_ticks)
        return self._poll(now_ticks)

    def _poll(self, now_ticks: int) -> list[Command]:
        ctx = self._context()
        commands: list[Command] = []
        phrase = self.capture.poll(now_ticks)
        if phrase is not None:
            commands += self._phrase_ended(phrase, now_ticks, ctx)
        commands += self.mode.tick(now_ticks, self._context())
        return commands

    def _phrase_ended(self, phrase: Phrase, now_ticks: int, ctx: ModeContext) -> list[Command]:
        self.counters["phrases"] += 1
        self.last_phrase = phrase
        self._key_notes.extend((n.pitch, float(n.duration_ticks)) for n in phrase.notes)
        self.key = estimate_key(self._key_notes)
        # The context was built before the estimate; the mode must see the key this phrase gives.
        return self.mode.phrase_ended(phrase, now_ticks, dataclasses.replace(ctx, key=self._key_in_use()))

    def _panic(self, now_ticks: int, reason: str) -> list[Command]:
        commands = self.mode.cancel(now_ticks, "stop")
        if self._last_panic_ticks != now_ticks:  # a DAW sends CC123 on all 16 channels at once
            self._last_panic_ticks = now_ticks
            self.counters["panics"] += 1
            commands.append(Panic(reason))
            commands += self.mode.after_panic()
        return commands

    # --- intents from the UI or MIDI control -------------------------------------------------------

    def intent(self, obj: Intent) -> list[Command]:
        """Apply a user intent; bad values come back as a warning Log, never an exception."""
        now = self._now_ticks
        if isinstance(obj, SetMode):
            return self._change({"mode": obj.name})
        if isinstance(obj, ChangeSettings):
            return self._change(dict(obj.changes))
        if isinstance(obj, PanicIntent):
            self._last_panic_ticks = None
            return self._panic(now, "panic requested")
        if isinstance(obj, Regenerate):
            return self.mode.regenerate(now, self._context(), obj.new_seed)
        if isinstance(obj, StorePhrase):
            return self.mode.store_phrase(now, self._context())
        return [Log("warning", f"ignored an unknown intent: {obj!r}")]

    def _change(self, changes: dict[str, Any]) -> list[Command]:
        try:
            new = self.settings.replace(**changes)
        except (TypeError, ValueError) as err:
            return [Log("warning", f"settings not changed: {err}")]
        old = self.settings
        changed = {f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)}
        if not changed:
            return []
        commands: list[Command] = []
        if changed - _INPUT_ONLY_SETTINGS:
            commands += self.mode.cancel(self._now_ticks, "stop")
        self.settings = new
        self.capture.settings = new.capture_settings()
        if "mode" in changed:
            self.mode = create_mode(new.mode)
            commands.append(Log("info", f"mode: {new.mode}"))
        return commands

    def snapshot(self) -> dict[str, Any]:
        """A small, copyable picture of the engine for the UI."""
        return {
            "mode": self.settings.mode,
            "phrases": self.counters["phrases"],
            "capturing": self.capture.in_progress,
            "player_active": self.capture.player_active,
            "key": (key.name if (key := self._key_in_use()) is not None else None),
            "key_source": "set" if self.settings.key is not None else "detected",
            "now_ticks": self._now_ticks,
            "counters": {
                **self.counters,
                "answers": self._answer_count,
                "ignored_note_offs": self.capture.ignored,
                "filtered": self.capture.filtered,
            },
            **self.mode.snapshot(self._now_ticks),
        }
