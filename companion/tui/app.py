"""The Textual app: a thin view over the runtime that reads snapshots and posts intents, never blocking its threads."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Static

from companion.core.engine import ChangeSettings, PanicIntent, Regenerate, SetMode, StorePhrase, available_modes
from companion.live.clock import CLOCK_SOURCES
from companion.live.intents import ChoosePorts, Learn, LoadPreset, SetClock, SetRecording
from companion.live.stop_signals import stop_signals
from companion.tui.controls import CONTROLS, CONTROLS_BY_KEY, ControlsPanel, ControlSpec, setting_value
from companion.tui.help_screen import HelpScreen, help_rows
from companion.tui.keyboard import KeyboardPiano, KeyboardPianoView
from companion.tui.log_pane import LogPane
from companion.tui.meters import Meters, TransportBar
from companion.tui.piano_roll import PianoRoll
from companion.tui.ports_screen import PortsScreen
from companion.tui.presets_screen import PresetsScreen

REFRESH_HZ = 20  # snapshots read per second; the roll draws at most every MIN_FRAME_NS
TERMINATION_SIGNALS = stop_signals(keyboard=False)  # Ctrl-C is a key here; the rest end the app as Q does
PENDING_NS = 600_000_000  # a value just set by a key wins over snapshots for this long (the engine catches up)
LOG_BACKLOG = 500
HINT = ("Space panic · r rec · n regen (N: same seed) · m/M mode · ↑↓←→ controls · c learn CC · "
        "b presets · i ports · ? help · q quit")
SHORT_HINT = "Space panic · r rec · n regen · m mode · b presets · i ports · ? help · q quit"


class RuntimeLike(Protocol):
    """The only calls the UI makes into the runtime (all non-blocking except close, which ends the session)."""

    def snapshot(self) -> dict[str, Any]: ...
    def post_intent(self, intent: object) -> None: ...
    def inject(self, data: list[int]) -> None: ...
    def close(self) -> None: ...
    def add_log_listener(self, listener: Callable[[str, str], None]) -> None: ...


class LogArrived(Message):
    """Posted from a runtime thread when log lines wait in the app's backlog; at most one is in flight."""


def _engine(snap: Mapping[str, Any]) -> Mapping[str, Any]:
    engine = snap.get("engine")
    return engine if isinstance(engine, Mapping) else {}


def _control_state(snap: Mapping[str, Any]) -> dict[str, Any]:
    """last_cc and cc_map, wherever the runtime puts them: the snapshot's top level or its engine dict."""
    engine = _engine(snap)
    return {key: snap[key] if key in snap else engine.get(key) for key in ("last_cc", "cc_map")}


def _learn_bounds(spec: ControlSpec) -> tuple[float, float]:
    """The range a learned CC sweeps: the control's own for numbers; none (equal) for on/off and choices."""
    return (spec.low, spec.high) if spec.kind in ("float", "int") else (0.0, 0.0)


def _cc_map_from(engine: Mapping[str, Any]) -> dict[str, tuple[int | None, int]] | None:
    """The runtime's CC mappings as {control: (channel or None, cc)}, or None if the runtime does not map CCs."""
    raw = engine.get("cc_map")
    if not isinstance(raw, Mapping):
        return None
    mapping: dict[str, tuple[int | None, int]] = {}
    for target, where in raw.items():
        if isinstance(where, Sequence) and len(where) == 2:
            mapping[str(target)] = (where[0], int(where[1]))
        elif isinstance(where, int):
            mapping[str(target)] = (None, where)
    return mapping


class CompanionApp(App[int]):
    """The musician's cockpit: transport, piano roll, controls, meters, log; every action one key away."""

    CSS_PATH = "companion.tcss"
    # Below 120 columns the screen has the class -narrow (companion.tcss lays the bottom row out for 80).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    TITLE = "Companion"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("space", "panic", "panic: all notes off, now"),
        Binding("r", "record", "record on/off (takes saved as MIDI + JSON)"),
        Binding("n", "regenerate(True)", "regenerate the last answer with a new seed"),
        Binding("N", "regenerate(False)", "regenerate the last answer with the same seed"),
        Binding("v", "store_phrase", "morph: store the last phrase as A, then as B (A to B plays)"),
        Binding("m", "mode(1)", "next mode"),
        Binding("M", "mode(-1)", "previous mode"),
        Binding("up", "select(-1)", "select the control above"),
        Binding("down", "select(1)", "select the control below"),
        Binding("right,equals_sign", "change(1)", "selected control up (toggle / next choice)"),
        Binding("left,minus", "change(-1)", "selected control down (toggle / previous choice)"),
        Binding("c", "learn", "MIDI learn: the next CC moved controls the selected control (c again: cancel)"),
        Binding("b", "presets", "preset browser: load, or s to save the current settings"),
        Binding("i", "ports", "choose MIDI ports (input, then output; 0 = virtual)"),
        Binding("ctrl+k", "clock", "next clock: internal → external (the DAW's MIDI clock) → Ableton Link"),
        Binding("z", "octave(-1)", "keyboard piano: octave down"),
        Binding("x", "octave(1)", "keyboard piano: octave up"),
        Binding("question_mark,f1", "help", "this help"),
        Binding("q,ctrl+q", "quit", "quit (all notes off)"),
    ]

    def __init__(self, runtime: RuntimeLike, *, refresh_hz: float = REFRESH_HZ,
                 list_backends: Callable[[], Sequence[Any]] | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns,
                 on_ready: Callable[[], object] | None = None) -> None:
        super().__init__()
        self._on_ready = on_ready
        self.runtime = runtime
        self.refresh_hz = refresh_hz
        self.piano = KeyboardPiano()
        self.recording = False
        self.learning: str | None = None
        self.cc_map: dict[str, tuple[int | None, int]] = {}
        self._learned: dict[str, tuple[int | None, int]] = {}  # learned here, until the runtime's map has them
        self._preset_seen: object = None
        self.last_snapshot: dict[str, Any] = {}
        self._clock_ns = clock_ns
        self._list_backends = list_backends
        self._pending: dict[str, tuple[Any, int]] = {}  # control -> (value just set, until when it wins)
        self._learn_baseline: Any = None
        self._last_cc_seen: Any = None
        self._log_backlog: deque[tuple[str, str]] = deque(maxlen=LOG_BACKLOG)
        self._log_posted = False
        self._runtime_closed = False  # not `_closed`: Textual's message pump has that (a closed pump takes no messages)
        # The main screen's widgets, kept so a redraw never searches a dialog that covers them.
        self.transport = TransportBar(id="transport")
        self.roll = PianoRoll(id="roll")
        self.controls = ControlsPanel(id="controls")
        self.meters = Meters(id="meters")
        self.log_pane = LogPane(id="log")
        self.piano_view = KeyboardPianoView(self.piano, id="piano")

    # --- layout and life cycle -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self.transport
        yield self.roll
        with Horizontal(id="bottom"):
            yield self.controls
            yield self.meters
            yield self.log_pane
        yield self.piano_view
        yield Static(HINT, id="hint", classes="hint-wide")
        yield Static(SHORT_HINT, id="short-hint", classes="hint-narrow")

    def on_mount(self) -> None:
        self._log_backlog.extend(self._safe_snapshot().get("log", []) or [])
        self.runtime.add_log_listener(self._on_runtime_log)
        self.post_message(LogArrived())
        self._refresh_from_runtime()
        self.set_interval(1.0 / self.refresh_hz, self._refresh_from_runtime)
        if self._on_ready is not None:
            self.call_after_refresh(self._on_ready)  # the runtime starts once the screen is up
        self._catch_termination()

    def _catch_termination(self) -> None:
        """`kill`, a closed terminal window or a dropped ssh session end the app as Q does: all notes off first."""
        loop = asyncio.get_running_loop()
        for sig in TERMINATION_SIGNALS:
            try:
                loop.add_signal_handler(sig, self._terminated, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows' loops, or not the main thread
                return

    def _terminated(self, sig: signal.Signals) -> None:
        self.shutdown_runtime()  # notes off before anything else: the terminal may already be gone
        self.exit(return_code=128 + int(sig))

    def _safe_snapshot(self) -> dict[str, Any]:
        snap = self.runtime.snapshot()
        return snap if isinstance(snap, dict) else {}

    # --- the runtime's picture -> the widgets ------------------------------------------------------------

    def _refresh_from_runtime(self) -> None:
        if self._runtime_closed or not self.roll.is_mounted:
            return
        for data in self.piano.due(self._clock_ns()):
            self.runtime.inject(data)
        snap = self._safe_snapshot()
        if snap.get("session_lost"):  # attached from another process, and the session is gone
            self.exit(return_code=1, message=f"companion: {snap['session_lost']}")
            return
        self.last_snapshot = snap
        engine = _engine(snap)
        if snap.get("preset") != self._preset_seen:  # another preset: its own mappings, none learned for it yet
            self._preset_seen, self._learned = snap.get("preset"), {}
        self._follow_cc(_control_state(snap))
        settings = dict(snap["settings"]) if isinstance(snap.get("settings"), Mapping) else {}
        if isinstance(snap.get("extras"), Mapping):
            settings["extras"] = snap["extras"]
        if "recording" in snap:
            self.recording = bool(snap["recording"])
        self.transport.show(snap, self.recording)
        bar_ticks = int(snap.get("bar_ticks") or 0) or 480 * 4 * int(snap.get("beats_per_bar") or 4) // 4
        ticks = snap.get("ticks")
        now_ticks = ticks if isinstance(ticks, int) else int(engine.get("now_ticks", 0) or 0)
        self.roll.show(snap.get("notes") or [], snap.get("planned") or [], now_ticks, bar_ticks)
        self.controls.show(self._control_values(settings), engine.get("key"),
                                           self.cc_map, self.learning)
        self.meters.show(snap)
        self.piano_view.update_if_changed()

    def _control_values(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        now_ns = self._clock_ns()
        values = {spec.key: setting_value(settings, spec) for spec in CONTROLS}
        for key, (value, until_ns) in list(self._pending.items()):
            if now_ns < until_ns and values[key] != value:
                values[key] = value
            else:
                del self._pending[key]
        return values

    def _current_value(self, key: str) -> Any:
        return self.controls.values.get(key, CONTROLS_BY_KEY[key].default)

    def _set_control(self, key: str, value: Any) -> None:
        self._pending[key] = (value, self._clock_ns() + PENDING_NS)
        self.runtime.post_intent(ChangeSettings({key: value}))
        panel = self.controls
        panel.show({**panel.values, key: value}, panel.detected_key, self.cc_map, self.learning)

    # --- MIDI learn and CC control -------------------------------------------------------------------------

    def _follow_cc(self, source: Mapping[str, Any]) -> None:
        runtime_map = _cc_map_from(source)
        if runtime_map is not None:  # the runtime's mappings are the truth (a new preset's replace the old ones)
            self.cc_map = {**self._learned, **runtime_map}
        last_cc = source.get("last_cc")
        if last_cc is None or last_cc == self._last_cc_seen:
            return
        self._last_cc_seen = last_cc
        channel, control, value = (int(v) for v in last_cc)
        if self.learning is not None and last_cc != self._learn_baseline:
            spec = CONTROLS_BY_KEY[self.learning]
            self.cc_map[spec.key] = self._learned[spec.key] = (channel, control)
            self.runtime.post_intent(Learn(spec.key, control, channel, *_learn_bounds(spec)))
            self.learning = None
            self.notify(f"CC{control} (channel {channel + 1}) now controls {spec.label}")
            self._set_control(spec.key, spec.from_cc(value))
            return
        if runtime_map is None:  # the runtime does not map CCs itself: the UI turns the knob into a setting
            for key, (mapped_channel, mapped_cc) in self.cc_map.items():
                if mapped_cc == control and mapped_channel in (None, channel):
                    self._set_control(key, CONTROLS_BY_KEY[key].from_cc(value))

    def action_learn(self) -> None:
        spec = self.controls.selected_spec
        if self.learning == spec.key:
            self.learning = None
            self.notify("MIDI learn cancelled")
        else:
            self.learning = spec.key
            self._learn_baseline = _control_state(self.last_snapshot).get("last_cc")
            self.runtime.post_intent(Learn(spec.key, None, None, *_learn_bounds(spec)))
            self.notify(f"MIDI learn: move a knob or fader for {spec.label}")
        self._redraw_controls()

    def _redraw_controls(self) -> None:
        panel = self.controls
        panel.show(panel.values, panel.detected_key, self.cc_map, self.learning)

    # --- log lines from the runtime's threads -------------------------------------------------------------

    def _on_runtime_log(self, level: str, text: str) -> None:
        """Runs on a runtime thread: append and, if none is in flight, post one message. Never blocks."""
        self._log_backlog.append((level, text))
        if not self._log_posted:
            self._log_posted = True
            self.post_message(LogArrived())

    def on_log_arrived(self, _message: LogArrived) -> None:
        self._log_posted = False
        lines = []
        while self._log_backlog:
            lines.append(self._log_backlog.popleft())
        if lines:
            self.log_pane.add_lines(lines)

    # --- keys ------------------------------------------------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        """The keyboard piano, on the main screen only (dialogs keep their letters)."""
        if self.screen is not self.screen_stack[0] or event.character is None:
            return
        messages = self.piano.press(event.character.lower(), self._clock_ns())
        if self.piano.pitch_for(event.character.lower()) is not None:
            event.stop()
            event.prevent_default()
        for data in messages:
            self.runtime.inject(data)

    def _release_piano(self) -> None:
        for data in self.piano.release_all():
            self.runtime.inject(data)

    def action_panic(self) -> None:
        self._release_piano()
        self.runtime.post_intent(PanicIntent())
        self.notify("all notes off", timeout=1.5)

    def action_record(self) -> None:
        self.recording = not self.recording  # the runtime's next snapshot says whether it really is
        self.runtime.post_intent(SetRecording(self.recording))
        self.transport.show(self.last_snapshot, self.recording)
        folder = self.last_snapshot.get("takes_dir")
        where = f" into {folder}" if folder else ""
        # Stopped: the runtime's log says whether it was saved (and where) or was empty.
        self.notify(f"recording a take{where}" if self.recording else "take stopped", timeout=2)

    def action_regenerate(self, new_seed: bool) -> None:
        self.runtime.post_intent(Regenerate(new_seed=new_seed))
        self.notify("regenerating with a new seed" if new_seed else "regenerating with the same seed", timeout=1.5)

    def action_store_phrase(self) -> None:
        self.runtime.post_intent(StorePhrase())  # the log says what was stored (or why not)

    def action_mode(self, step: int) -> None:
        modes = available_modes()
        current = _engine(self.last_snapshot).get("mode")
        index = modes.index(current) if current in modes else -1 if step > 0 else 0
        name = modes[(index + step) % len(modes)]
        self.runtime.post_intent(SetMode(name))
        self.notify(f"mode: {name}", timeout=1.5)

    def action_select(self, step: int) -> None:
        self.controls.select(step)

    def action_change(self, direction: int) -> None:
        spec = self.controls.selected_spec
        self._set_control(spec.key, spec.step_value(self._current_value(spec.key), direction))

    def action_octave(self, steps: int) -> None:
        self.piano.shift_octave(steps)
        self.piano_view.update_if_changed()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(help_rows(self.BINDINGS)))

    def action_presets(self) -> None:
        settings = self.last_snapshot.get("settings")
        values = dict(settings) if isinstance(settings, Mapping) else {}
        extras = self.last_snapshot.get("extras", values.get("extras"))
        values["extras"] = {**(extras if isinstance(extras, Mapping) else {}), **self.controls.values}
        mappings = self.last_snapshot.get("cc_mappings")
        self.push_screen(PresetsScreen(values, self.last_snapshot.get("preset"),
                                       tuple(mappings) if mappings is not None else None), self._preset_chosen)

    def _preset_chosen(self, choice: LoadPreset | None) -> None:
        if choice is not None:
            self.runtime.post_intent(choice)
            self.notify(f"loading preset {choice.name}", timeout=2)

    def action_clock(self) -> None:
        current = self.last_snapshot.get("clock")
        index = CLOCK_SOURCES.index(current) if current in CLOCK_SOURCES else -1
        name = CLOCK_SOURCES[(index + 1) % len(CLOCK_SOURCES)]
        self.runtime.post_intent(SetClock(name))  # the transport bar shows it once the runtime switched
        self.notify(f"clock: {name}", timeout=2)

    def action_ports(self) -> None:
        ports = self.last_snapshot.get("ports") or {}
        backend = ports.get("backend") if isinstance(ports, Mapping) else None
        if self._list_backends is None:
            from companion.midi.ports import list_backends

            self._list_backends = list_backends
        self.push_screen(PortsScreen(backend, self._list_backends), self._ports_chosen)

    def _ports_chosen(self, choice: ChoosePorts | None) -> None:
        if choice is not None:
            self.runtime.post_intent(choice)
            self.notify(f"ports: in {choice.in_port or 'virtual'}, out {choice.out_port or 'virtual'}", timeout=3)

    async def action_quit(self) -> None:
        """All notes off (ours and the runtime's), then leave."""
        self.shutdown_runtime()
        self.exit(0)

    def shutdown_runtime(self) -> None:
        if self._runtime_closed:
            return
        self._runtime_closed = True
        self._release_piano()
        self.runtime.close()

    def on_unmount(self) -> None:
        self.shutdown_runtime()


def build_app(runtime: RuntimeLike, **options: Any) -> CompanionApp:
    """The one factory for the CLI and the tests."""
    return CompanionApp(runtime, **options)
