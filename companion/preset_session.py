"""The live preset state the runtime's engine thread owns: current preset, extras, CC/Program Change, switches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from companion.core.control import (
    Controller,
    Learned,
    SetExtras,
    SwitchPreset,
    next_bar_ticks,
    split_changes,
    switch_commands,
    with_extras,
)
from companion.core.engine import ChangeSettings, Engine, EngineSettings
from companion.core.events import Command, Log, Message, RequestAnswer
from companion.errors import PresetError
from companion.presets import ClockOptions, Preset, load_preset


@dataclass(frozen=True)
class ClockChange:
    """What a switched-to preset asks of the clock; the runtime applies it to an internal clock only."""

    bpm: float | None  # None: the preset sets no tempo, the running one is kept
    beats_per_bar: int
    beat_unit: int


class PresetSession:
    """Single-threaded: every method runs on the engine thread and returns engine commands for `Runtime._apply`.

    The runtime calls `handle` before `Engine.handle` for each channel message (a consumed one is a control, not
    music), `intent` before `Engine.intent` (None: not a preset intent, give it to the engine), `tick` after
    `Engine.tick`, and `request` on each RequestAnswer before queueing it. Loading a preset (file I/O, about a
    millisecond) happens when the switch is asked for, a bar ahead of the switch itself.
    """

    def __init__(self, preset: Preset | None = None, loader: Callable[[str], Preset] = load_preset) -> None:
        self.preset = preset
        self.extras: dict[str, Any] = preset.request_settings() if preset else {}
        self.controller = Controller(preset.cc if preset else (), preset.bank if preset else None)
        self._loader = loader
        self._next: tuple[SwitchPreset, Preset, EngineSettings] | None = None
        self._clock_change: ClockChange | None = None
        self.switches = 0

    @property
    def name(self) -> str | None:
        return self.preset.id if self.preset else None

    # --- the runtime's four calls ------------------------------------------------------------------

    def handle(self, engine: Engine, message: Message, now_ticks: int) -> tuple[bool, list[Command]]:
        consumed, actions = self.controller.handle(message, now_ticks, engine.settings.bar_ticks)
        return consumed, self._act(engine, actions, now_ticks)

    def intent(self, engine: Engine, intent: object, now_ticks: int) -> list[Command] | None:
        """Preset intents (LoadPreset, Learn, ChangeSettings of extras); None when the engine should take it."""
        kind = type(intent).__name__  # the UI's intents (companion/tui/intents.py), matched without importing the UI
        if kind == "LoadPreset":
            return self.request_switch(str(getattr(intent, "name", "")), now_ticks, engine.settings.bar_ticks)
        if kind == "Learn":
            low, high = getattr(intent, "low", None), getattr(intent, "high", None)
            bounds = (None, None) if low == high else (low, high)
            if getattr(intent, "control", None) is None:
                return self._act(engine, self.controller.arm_learn(intent.target, *bounds), now_ticks)
            return self._act(engine, self.controller.learn(intent.target, intent.control,
                                                           getattr(intent, "channel", None), *bounds), now_ticks)
        if isinstance(intent, ChangeSettings):
            engine_changes, extra_changes = split_changes(intent.changes)
            self.extras.update(extra_changes)
            return engine.intent(ChangeSettings(engine_changes)) if engine_changes else []
        return None

    def tick(self, engine: Engine, now_ticks: int) -> list[Command]:
        """At the bar line of a pending switch: cancel from the bar, new settings, all notes off."""
        due = self.controller.due(now_ticks)
        if due is None or self._next is None or self._next[0] != due:
            return []
        _, preset, settings = self._next
        self._next = None
        commands = switch_commands(engine, settings, due.at_ticks, f"preset change to {preset.id}")
        self.preset = preset
        self.extras = preset.request_settings()
        self.controller.replace(preset.cc, preset.bank)
        self._clock_change = ClockChange(preset.clock.bpm, settings.beats_per_bar, settings.beat_unit)
        self.switches += 1
        return [*commands, Log("info", f"preset: {preset.id} ({preset.name})")]

    def request(self, request: RequestAnswer) -> RequestAnswer:
        """The answer request with the preset's extras (model, style, density, harmony...) under its settings."""
        return with_extras(request, self.extras)

    # --- switching ---------------------------------------------------------------------------------

    def request_switch(self, name: str, now_ticks: int, bar_ticks: int, program: int = -1) -> list[Command]:
        """Load `name` now and switch at the next bar line; a bad preset is refused and the current one stays."""
        try:
            preset = self._loader(name)
            settings = preset.engine_settings()
        except PresetError as err:
            self.controller.pending = None
            self._next = None
            current = self.name or "the current settings"
            return [Log("warning", f"preset {name!r} refused, keeping {current}: {err.message}")]
        switch = SwitchPreset(preset.id, program, next_bar_ticks(now_ticks, bar_ticks))
        self.controller.pending = switch
        self._next = (switch, preset, settings)
        if program >= 0:  # the controller has already said "program n: name from the next bar"
            return []
        return [Log("info", f"switching to preset {preset.id} at the next bar")]

    def take_clock_change(self) -> ClockChange | None:
        """The clock the last switch asked for, once (the runtime sets an internal clock's tempo and meter)."""
        change, self._clock_change = self._clock_change, None
        return change

    def clock_options(self) -> ClockOptions:
        return self.preset.clock if self.preset else ClockOptions()

    def _act(self, engine: Engine, actions: list[Any], now_ticks: int) -> list[Command]:
        commands: list[Command] = []
        for action in actions:
            if isinstance(action, SwitchPreset):
                commands += self.request_switch(action.name, now_ticks, engine.settings.bar_ticks, action.program)
            elif isinstance(action, SetExtras):
                self.extras.update(action.changes)
            elif isinstance(action, Learned):
                continue  # its Log follows; the mapping already lives in the controller
            elif isinstance(action, Log):
                commands.append(action)
            else:  # ChangeSettings, Regenerate, PanicIntent
                commands += engine.intent(action)
        return commands

    def snapshot(self) -> dict[str, Any]:
        """For the UI: preset, extras, CC map (control -> (channel, cc)), learning, pending switch, last CC."""
        pending = self.controller.pending
        return {
            "preset": self.name,
            "extras": dict(self.extras),
            "cc_map": {m.control: (m.channel, m.cc) for m in self.controller.mappings},
            "cc_mappings": tuple(self.controller.mappings),  # whole, for saving the live state as a preset
            "learning": self.controller.learning,
            "pending_preset": pending.name if pending else None,
            "last_cc": self.controller.last_cc,
        }
