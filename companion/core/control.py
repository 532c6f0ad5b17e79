"""MIDI control, pure: CC mappings scaled to live controls, MIDI learn, Program Change -> preset switch at the bar."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from companion.core.drums import DRUM_STYLES
from companion.core.engine import ChangeSettings, Engine, EngineSettings, PanicIntent, Regenerate, StorePhrase
from companion.core.events import (
    CC_ALL_NOTES_OFF,
    CC_ALL_SOUND_OFF,
    CC_SUSTAIN,
    Command,
    ControlChange,
    Log,
    Message,
    Panic,
    ProgramChange,
    RequestAnswer,
)
from companion.core.settings import HARMONY_STYLES

CC_MAX = 127
TRIGGER_THRESHOLD = 64  # a switch or button counts as "on" from 64 up, as the sustain pedal does
# Controllers a mapping may not take: the player needs them to mean what they mean.
RESERVED_CCS = {CC_SUSTAIN: "sustain pedal", CC_ALL_SOUND_OFF: "all sound off", CC_ALL_NOTES_OFF: "all notes off"}


@dataclass(frozen=True, slots=True)
class ControlSpec:
    """A live control: where its value goes ("engine" setting, "extra" for the generator, or an "action")."""

    name: str
    kind: str  # "float" | "int" | "bool" | "choice" | "trigger"
    target: str  # "engine" | "extra" | "action"
    low: float = 0.0
    high: float = 1.0
    choices: tuple[str, ...] = ()
    doc: str = ""

    def scale(self, cc_value: int, low: float | None = None, high: float | None = None) -> Any:
        """CC 0..127 onto this control: linear over [low, high], on/off at 64, or one slice per choice."""
        cc_value = max(0, min(CC_MAX, int(cc_value)))
        if self.kind in ("bool", "trigger"):
            return cc_value >= TRIGGER_THRESHOLD
        if self.kind == "choice":
            return self.choices[min(len(self.choices) - 1, cc_value * len(self.choices) // (CC_MAX + 1))]
        lo = self.low if low is None else low
        hi = self.high if high is None else high
        value = lo + (hi - lo) * cc_value / CC_MAX
        return int(round(value)) if self.kind == "int" else round(value, 4)


_SPECS = (
    ControlSpec("temperature", "float", "engine", 0.1, 2.0, doc="randomness of the answers"),
    ControlSpec("response_bars", "int", "engine", 1, 8, doc="length of each answer in bars"),
    ControlSpec("silence_beats", "float", "engine", 0.5, 8.0, doc="beats of silence that end a phrase"),
    ControlSpec("key_lock", "bool", "engine", doc="keep answers in the detected key (on from 64)"),
    ControlSpec("thru", "bool", "engine", doc="echo the player's notes (on from 64)"),
    ControlSpec("density", "float", "extra", 1.0, 16.0, doc="notes per bar the model aims for"),
    ControlSpec("top_p", "float", "extra", 0.5, 1.0, doc="nucleus sampling: lower keeps to likelier notes"),
    ControlSpec("distance", "float", "extra", 0.0, 1.0, doc="variation distance: 0 nearly the same, 1 a stranger"),
    ControlSpec("humanize", "float", "extra", 0.0, 1.0, doc="timing and velocity looseness of the output"),
    ControlSpec("harmony_style", "choice", "engine", choices=HARMONY_STYLES, doc="harmony voicing, one CC slice each"),
    ControlSpec("morph_steps", "int", "engine", 2, 16, doc="steps of a morph between the last two phrases"),
    ControlSpec("drum_style", "choice", "extra", choices=DRUM_STYLES, doc="drums: the style, one CC slice each"),
    ControlSpec("drum_density", "float", "extra", 0.0, 1.0, doc="drums: how busy (the player's density moves it)"),
    ControlSpec("drum_fill_rate", "float", "extra", 0.0, 1.0, doc="drums: chance of a fill at a phrase end"),
    ControlSpec("drum_swing", "float", "extra", 0.0, 1.0, doc="drums: 0 straight, 1 triplet swing"),
    ControlSpec("drum_humanize", "float", "extra", 0.0, 1.0, doc="drums: 0 on the grid, 1 the model's timing"),
    ControlSpec("drum_mute", "bool", "extra", doc="drums: mute the drummer (on from 64)"),
    ControlSpec("regenerate", "trigger", "action", doc="replay the last answer with a new seed (press: >= 64)"),
    ControlSpec("panic", "trigger", "action", doc="all notes off (press: >= 64)"),
    ControlSpec("store_phrase", "trigger", "action",
                doc="morph: keep the last phrase as A, then B (A to B plays) (press: >= 64)"),
)
CONTROLS: Mapping[str, ControlSpec] = {spec.name: spec for spec in _SPECS}
_TRIGGERS: Mapping[str, Callable[[], ControlAction]] = {
    "regenerate": lambda: Regenerate(new_seed=True), "panic": PanicIntent, "store_phrase": StorePhrase}
"""Every control a CC can drive, by name."""


def control_names() -> list[str]:
    return sorted(CONTROLS)


# --- what the controller hands back to the runtime ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetExtras:
    """Change generator settings that EngineSettings does not hold (density, distance, harmony style...)."""

    changes: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class SwitchPreset:
    """Load preset `name` and switch to it at `at_ticks` (a bar line), with note-offs for anything sounding."""

    name: str
    program: int
    at_ticks: int


@dataclass(frozen=True, slots=True)
class Learned:
    """MIDI learn mapped a controller; the runtime shows it (and may save it into the preset)."""

    mapping: CCMapping




# --- mappings ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CCMapping:
    """Controller `cc` (on `channel`, None = any) drives control `control`, scaled to [low, high] if given."""

    cc: int
    control: str
    channel: int | None = None
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.control not in CONTROLS:
            raise ValueError(f"unknown control {self.control!r}; controls: {', '.join(control_names())}")
        if not isinstance(self.cc, int) or not 0 <= self.cc <= CC_MAX:
            raise ValueError(f"CC number must be 0..127, got {self.cc!r}")
        if self.cc in RESERVED_CCS:
            raise ValueError(f"CC {self.cc} is the {RESERVED_CCS[self.cc]}; map another controller")
        if self.channel is not None and not 0 <= self.channel <= 15:
            raise ValueError(f"channel must be 0..15 or None, got {self.channel!r}")

    def value(self, cc_value: int) -> Any:
        return CONTROLS[self.control].scale(cc_value, self.low, self.high)


@dataclass(frozen=True, slots=True)
class Bank:
    """Program Change on `channel` (0..15, None = any) switches to `programs[number]` (wire numbers 0..127)."""

    programs: Mapping[int, str] = field(default_factory=dict, hash=False)
    channel: int | None = 15


ControlAction = SetExtras | SwitchPreset | Learned | Log | ChangeSettings | Regenerate | PanicIntent | StorePhrase
"""What `Controller` hands the runtime: engine intents go to `Engine.intent`, the rest the runtime applies."""


def learn(mappings: tuple[CCMapping, ...], control_name: str, cc: int, channel: int | None = None,
          low: float | None = None, high: float | None = None) -> tuple[CCMapping, ...]:
    """The mappings with `cc` now driving `control_name`; the control's old CC and the CC's old control are dropped."""
    new = CCMapping(cc, control_name, channel, low, high)
    kept = tuple(m for m in mappings if m.control != control_name and not (m.cc == cc and m.channel == channel))
    return (*kept, new)


def next_bar_ticks(now_ticks: int, bar_ticks: int) -> int:
    """The first bar line at or after `now_ticks` (grid from tick 0)."""
    return -((-now_ticks) // bar_ticks) * bar_ticks


class Controller:
    """Turns the player's CC and Program Change into control actions; single-threaded, owned by the engine thread."""

    def __init__(self, mappings: tuple[CCMapping, ...] = (), bank: Bank | None = None) -> None:
        self.mappings = tuple(mappings)
        self.bank = bank or Bank()
        self.pending: SwitchPreset | None = None
        self._learning: tuple[str, float | None, float | None] | None = None
        self._trigger_down: set[tuple[int, int]] = set()
        self.last_cc: tuple[int, int, int] | None = None  # (channel, control, value), for the UI

    @property
    def learning(self) -> str | None:
        return self._learning[0] if self._learning else None

    def arm_learn(self, control_name: str, low: float | None = None, high: float | None = None) -> list[ControlAction]:
        """The next CC moved (other than the reserved ones) will drive `control_name`."""
        if control_name not in CONTROLS:
            return [Log("warning", f"cannot learn {control_name!r}: controls are {', '.join(control_names())}")]
        self._learning = (control_name, low, high)
        return [Log("info", f"MIDI learn: move a knob or fader for {control_name}")]

    def learn(self, control_name: str, cc: int, channel: int | None = None,
              low: float | None = None, high: float | None = None) -> list[ControlAction]:
        """Map `cc` to `control_name` now (the UI saw the CC itself); a bad mapping is a warning, not an error."""
        try:
            self.mappings = learn(self.mappings, control_name, cc, channel, low, high)
        except ValueError as err:
            return [Log("warning", f"MIDI learn: {err}")]
        self._learning = None
        mapping = self.mappings[-1]
        where = "any channel" if channel is None else f"channel {channel + 1}"
        return [Learned(mapping), Log("info", f"CC {cc} ({where}) now controls {control_name}")]

    def replace(self, mappings: tuple[CCMapping, ...], bank: Bank | None) -> None:
        """A new preset's mappings; its bank if it has one, else the current bank stays (so a set keeps working)."""
        self.mappings = tuple(mappings)
        if bank is not None and bank.programs:
            self.bank = bank
        self._trigger_down.clear()

    def handle(self, message: Message, now_ticks: int, bar_ticks: int) -> tuple[bool, list[ControlAction]]:
        """(consumed, actions): a consumed message must not reach the engine (it was a control, not music)."""
        if isinstance(message, ProgramChange):
            return self._program(message, now_ticks, bar_ticks)
        if not isinstance(message, ControlChange):
            return False, []
        self.last_cc = (message.channel, message.control, message.value)
        if self._learning is not None and message.control not in RESERVED_CCS:
            name, low, high = self._learning
            return True, self.learn(name, message.control, message.channel, low, high)
        for mapping in self.mappings:
            if mapping.cc == message.control and mapping.channel in (None, message.channel):
                return True, self._apply(mapping, message)
        return False, []

    def _apply(self, mapping: CCMapping, message: ControlChange) -> list[ControlAction]:
        spec = CONTROLS[mapping.control]
        value = mapping.value(message.value)
        if spec.kind == "trigger":
            key = (message.channel, message.control)
            if not value:
                self._trigger_down.discard(key)
                return []
            if key in self._trigger_down:  # a held button fires once
                return []
            self._trigger_down.add(key)
            return [_TRIGGERS[spec.name]()]
        if spec.target == "engine":
            return [ChangeSettings({spec.name: value})]
        return [SetExtras({spec.name: value})]

    def _program(self, message: ProgramChange, now_ticks: int, bar_ticks: int) -> tuple[bool, list[ControlAction]]:
        bank = self.bank
        if bank.channel is not None and message.channel != bank.channel:
            return False, []
        name = bank.programs.get(message.program)
        if name is None:
            known = ", ".join(f"{p}={n}" for p, n in sorted(bank.programs.items())) or "none"
            return True, [Log("warning", f"program {message.program} is not in the preset bank ({known})")]
        self.pending = SwitchPreset(name, message.program, next_bar_ticks(now_ticks, bar_ticks))
        return True, [self.pending, Log("info", f"program {message.program}: {name} from the next bar")]

    def due(self, now_ticks: int) -> SwitchPreset | None:
        """The pending switch once its bar line is reached (then it is no longer pending)."""
        pending = self.pending
        if pending is not None and now_ticks >= pending.at_ticks:
            self.pending = None
            return pending
        return None


# --- helpers for the runtime ------------------------------------------------------------------------


def switch_commands(engine: Engine, settings: EngineSettings, at_ticks: int, reason: str) -> list[Command]:
    """Switch `engine` to `settings` at the bar: cancel its answers from `at_ticks`, change settings, all notes off."""
    commands: list[Command] = list(engine.mode.cancel(at_ticks, "stop"))
    commands += engine.intent(ChangeSettings(dataclasses.asdict(settings)))
    commands.append(Panic(reason))
    return commands


def split_changes(changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(engine settings, extras): a UI or CC change of an EngineSettings field goes to the engine, else (density,
    distance, style...) to the extras."""
    fields = {f.name for f in dataclasses.fields(EngineSettings)}
    engine = {k: v for k, v in changes.items() if k in fields}
    return engine, {k: v for k, v in changes.items() if k not in fields}


def with_extras(request: RequestAnswer, extras: Mapping[str, Any]) -> RequestAnswer:
    """The request with the preset's extras under its settings (engine settings win on a shared name)."""
    return dataclasses.replace(request, settings={**extras, **request.settings})
