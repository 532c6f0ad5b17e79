"""The live preset state the runtime's engine thread owns: current preset, extras, CC/Program Change, switches."""

from __future__ import annotations

import queue
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
from companion.errors import CompanionError
from companion.presets.preset import ClockOptions, Preset, load_preset

# (token, name, the preset and its settings, or why it was refused)
Loaded = tuple[int, str, "Preset | None", "EngineSettings | None", "str | None"]


@dataclass(frozen=True)
class ClockChange:
    """What a switched-to preset asks of the clock; the runtime applies it to an internal clock only."""

    bpm: float | None  # None: the preset sets no tempo, the running one is kept
    beats_per_bar: int
    beat_unit: int


class PresetLoader:
    """Loads presets off the engine thread: reading and validating a file takes a millisecond, a hostile one more.

    `ask` returns at once; each load comes back, with its settings or the reason it was refused, from
    `finished()`. Threaded, the runtime runs `run` on a thread of its own (and `stop`s it); otherwise (tests,
    tools) `ask` loads in place."""

    def __init__(self, load: Callable[[str], Preset] = load_preset, *, threaded: bool = False) -> None:
        self._load = load
        self.threaded = threaded
        self._asked: queue.SimpleQueue[tuple[int, str] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Loaded] = queue.SimpleQueue()

    def ask(self, name: str, token: int) -> None:
        if self.threaded:
            self._asked.put((token, name))
        else:
            self._done.put(self._load_one(token, name))

    def run(self) -> None:
        """The preset thread's loop, until `stop`."""
        while (item := self._asked.get()) is not None:
            self._done.put(self._load_one(*item))

    def stop(self) -> None:
        self._asked.put(None)

    def finished(self) -> list[Loaded]:
        out: list[Loaded] = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def _load_one(self, token: int, name: str) -> Loaded:
        try:
            preset = self._load(name)
            return token, name, preset, preset.engine_settings(), None
        except CompanionError as err:
            return token, name, None, None, err.message
        except (OSError, ValueError, TypeError, RecursionError, MemoryError) as err:  # refused all the same
            return token, name, None, None, f"{type(err).__name__}: {err}"


class PresetSession:
    """Single-threaded: every method runs on the engine thread and returns engine commands for `Runtime._apply`.

    The runtime calls `handle` before `Engine.handle` for each channel message (a consumed one is a control, not
    music), `intent` before `Engine.intent` (None: not a preset intent, give it to the engine), `tick` after
    `Engine.tick`, and `request` on each RequestAnswer before queueing it. A preset is loaded by the
    `PresetLoader` when the switch is asked for (off this thread when the loader is threaded); the switch happens
    at the bar line asked for, or at the first one after the load if it came later; a refused one changes nothing.
    """

    def __init__(self, preset: Preset | None = None,
                 loader: Callable[[str], Preset] | PresetLoader = load_preset) -> None:
        self.preset = preset
        self.extras: dict[str, Any] = preset.request_settings() if preset else {}
        self.controller = Controller(preset.cc if preset else (), preset.bank if preset else None)
        self.loader = loader if isinstance(loader, PresetLoader) else PresetLoader(loader)
        self._asks = 0
        self._wanted: tuple[int, int, int] | None = None  # (token, program, bar line) of the load awaited
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
        kind = type(intent).__name__  # the UI's intents (companion/live/intents.py), matched without importing the UI
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
        """A finished load becomes the pending switch; at its bar line: cancel from the bar, new settings, all
        notes off."""
        loaded = self._collect(now_ticks, engine.settings.bar_ticks)
        due = self.controller.due(now_ticks)
        if due is None or self._next is None or self._next[0] != due:
            return loaded
        _, preset, settings = self._next
        self._next = None
        commands = switch_commands(engine, settings, due.at_ticks, f"preset change to {preset.id}")
        self.preset = preset
        self.extras = preset.request_settings()
        self.controller.replace(preset.cc, preset.bank)
        self._clock_change = ClockChange(preset.clock.bpm, settings.beats_per_bar, settings.beat_unit)
        self.switches += 1
        return [*loaded, *commands, Log("info", f"preset: {preset.id} ({preset.name})")]

    def request(self, request: RequestAnswer) -> RequestAnswer:
        """The answer request with the preset's extras (model, style, density, harmony...) under its settings."""
        return with_extras(request, self.extras)

    # --- switching ---------------------------------------------------------------------------------

    def request_switch(self, name: str, now_ticks: int, bar_ticks: int, program: int = -1) -> list[Command]:
        """Have `name` loaded and switch at the next bar line; a bad preset is refused and the current one stays."""
        self._asks += 1
        self._wanted = (self._asks, program, next_bar_ticks(now_ticks, bar_ticks))
        self._next = None
        self.loader.ask(name, self._asks)
        return self._collect(now_ticks, bar_ticks)  # an unthreaded loader has finished already

    def _collect(self, now_ticks: int, bar_ticks: int) -> list[Command]:
        """The loads finished since the last call: the one awaited becomes the pending switch, or is refused."""
        commands: list[Command] = []
        for token, name, preset, settings, problem in self.loader.finished():
            if self._wanted is None or token != self._wanted[0]:
                continue  # overtaken by a later request
            _, program, at_ticks = self._wanted
            self._wanted = None
            if preset is None or settings is None:
                self.controller.pending = None
                self._next = None
                current = self.name or "the current settings"
                commands.append(Log("warning", f"preset {name!r} refused, keeping {current}: {problem}"))
                continue
            switch = SwitchPreset(preset.id, program, at_ticks if now_ticks < at_ticks
                                  else next_bar_ticks(now_ticks, bar_ticks))
            self.controller.pending = switch
            self._next = (switch, preset, settings)
            if program < 0:  # for a program, the controller has already said "program n: name from the next bar"
                commands.append(Log("info", f"switching to preset {preset.id} at the next bar"))
        return commands

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
