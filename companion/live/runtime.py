"""The only module that starts threads: MIDI input -> engine -> scheduler, with the generator worker beside it."""

from __future__ import annotations

import dataclasses
import logging
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from companion.core.engine import Engine, EngineSettings
from companion.core.events import (
    Cancel,
    ClockMessage,
    ClockStart,
    ClockStop,
    Command,
    HarmonyCommand,
    Log,
    NoteOff,
    NoteOn,
    Panic,
    RequestAnswer,
    ScheduleNotes,
    SendNow,
)
from companion.harmony.worker import HarmonyWorker, Loader
from companion.live.clock import ClockControl, ClockOut, LiveClock, Source
from companion.live.generation import GenerationWorker, describe_answer
from companion.live.ports import InputFactory, LivePorts, PortCheck, PortChooser
from companion.live.scheduler import Scheduler
from companion.live.snapshot import Snapshots
from companion.midi.codec import DecodeStats, decode
from companion.midi.ports import OutputPort
from companion.midi.realtime import ENGINE_PRIORITY, HARMONY_PRIORITY, thaw_models, try_realtime
from companion.presets.preset import Preset
from companion.presets.session import PresetLoader, PresetSession
from companion.takes.keeper import TakeKeeper
from companion.takes.recording import TakeRecorder
from companion.worker.generators import Generator, answering_model

log = logging.getLogger("companion")

ENGINE_TICK_NS = 2_000_000  # the engine polls phrase ends and answer starts every 2 ms
GIL_SWITCH_INTERVAL_S = 0.0002
SNAPSHOT_NS = 33_000_000  # the UI's picture is rebuilt about 30 times a second
SUPERVISE_S = 0.25  # port changes, take journals and take writing happen this often
PORT_CHECK_ROUNDS = 4  # a lost or returned port is noticed within a second
_STOP = object()
_CLOCK_TYPES = ClockMessage.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RuntimeConfig:
    """How the runtime meets the outside world; musical behaviour lives in EngineSettings."""

    backend: str = "auto"
    in_port: str | None = None  # None: open the virtual port 'Companion In'
    out_port: str | None = None  # None: open the virtual port 'Companion Out'
    connect_in: str | None = None
    connect_out: str | None = None
    clock: str = "internal"  # "internal" | "external" (follow the DAW's MIDI Beat Clock) | "link" (Ableton Link)
    bpm: float = 120.0
    bpm_source: str = "default"  # where `bpm` came from: "--bpm", "preset" or "default"
    link_start_stop: bool = True  # with Link: follow the session's start/stop
    send_clock: bool = False
    model: str = "auto"  # "auto" | "markov" | "transformer"
    checkpoint: str | None = None  # None: the shipped checkpoint
    in_name: str = "Companion In"  # names of the virtual ports (two companions side by side need their own)
    out_name: str = "Companion Out"
    record_dir: str | None = None  # --record DIR: every take saved there
    timed_output: bool = True  # on our JACK client, planned notes written at their exact frame (--no-timed-output)


class Runtime:
    """Owns the threads; the UI and the CLI talk to it through `post_intent`, `snapshot` and `close`."""

    def __init__(
        self,
        settings: EngineSettings,
        *,
        inputs: Sequence[InputFactory],
        outputs: Sequence[OutputPort],
        generator: Generator,
        clock: Source | LiveClock,
        on_port_check: PortCheck | None = None,
        port_names: dict[str, str] | None = None,
        preset: Preset | None = None,
        recorder: TakeRecorder | None = None,
        record_from_start: bool = False,
        send_clock: bool = False,
        harmonizer_loader: Loader | None = None,
        chord_loader: Callable[[], Any] | None = None,  # chord_worker.ChordLoader
        send_ahead_ns: int = 0,
        hand_ahead_ns: int = 0,
        port_chooser: PortChooser | None = None,
    ) -> None:
        self.engine = Engine(settings)
        clock = self.clock = clock if isinstance(clock, LiveClock) else LiveClock(clock)  # the UI may switch it
        self.decode_stats = DecodeStats()
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.planned_answers: deque[tuple[str, int, int]] = deque(maxlen=64)  # (tag, start_ticks, end_ticks)
        self.sent_note_ons: deque[tuple[int, int, int]] = deque(maxlen=256)  # (channel, pitch, the tick planned)
        self._log_lines: deque[tuple[str, str]] = deque(maxlen=200)
        self._listeners: list[Callable[[str, str], None]] = []
        self._snapshots = Snapshots()  # what the UI's picture is built from
        self.presets = PresetSession(preset, PresetLoader(threaded=True))  # presets load on their own thread
        self.recorder = recorder
        self.takes = TakeKeeper(recorder, self.log)
        self._record_from_start = record_from_start and recorder is not None  # --record DIR: a take from the start
        self._closed = threading.Event()
        self._error: BaseException | None = None
        # Harmonize mode: the harmony worker starts when the mode is first used; the chorale models then load in a
        # process of their own (worker/harmony_process.py) unless a loader is given (tests: models in this process)
        self._harmonizer_loader = harmonizer_loader
        self._chord_loader = chord_loader
        self.harmony: HarmonyWorker | None = None
        self.scheduler = Scheduler(self._send_bytes, clock, on_error=self._thread_failed,
                                   send_ahead_ns=send_ahead_ns, on_note=self._sent_note,
                                   send_at=self._send_bytes_at, hand_ahead_ns=hand_ahead_ns,
                                   timed=lambda: self._ports.timed)
        self.generation = GenerationWorker(generator, self.scheduler, clock, log=self.log, closed=self._closed)
        # As clock master, F8 pulses go out from their own deadline thread through the same thread-safe ports.
        self._clock_out = ClockOut(self._send_bytes, clock, wanted=send_clock, send_at=self._send_bytes_at,
                                   hand_ahead_ns=hand_ahead_ns, timed=lambda: self._ports.timed)
        self._clock_control = ClockControl(clock, self._clock_out, self.engine, self.presets, recorder, self.log,
                                           self._apply)
        self._ports = LivePorts(inputs, outputs, on_midi=self._on_midi, scheduler=self.scheduler, closed=self._closed,
                                log=self.log, names=port_names, chooser=port_chooser, on_port_check=on_port_check)
        self._threads = [
            threading.Thread(target=self._guard(self._engine_loop), name="companion-engine", daemon=True),
            threading.Thread(target=self._guard(self.generation.run), name="companion-generator", daemon=True),
            threading.Thread(target=self._guard(self._supervise), name="companion-supervisor", daemon=True),
            threading.Thread(target=self._guard(self.presets.loader.run), name="companion-presets", daemon=True),
        ]

    # --- life cycle ----------------------------------------------------------------------------------

    def start(self) -> Runtime:
        # A thread waiting for the GIL gets it within this interval: keeps the scheduler's sends on time
        # while the engine, generator or UI threads run Python code (the default is 5 ms).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.scheduler.start()
        self._clock_out.start()
        for thread in self._threads:
            thread.start()
        self.log("info", f"answering with the {self.answering_model} model")
        if self._record_from_start:
            self._start_take()
        return self

    def close(self) -> None:
        """All notes off, threads stopped, ports closed; idempotent and safe to call from any thread."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._inbox.put(_STOP)
        self.presets.loader.stop()
        self.generation.stop()
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout=2.0)
        self._clock_out.stop()
        if self.harmony is not None:
            self.harmony.close()  # its note-offs go out before the scheduler's final panic
        self.scheduler.close()
        close_models = getattr(self.generator, "close", None)  # a model worker process: the runtime owns it
        if close_models is not None:
            close_models()
        self._stop_take()
        self.takes.write_pending()
        self._ports.close()
        self.clock.close()
        thaw_models()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def generator(self) -> Generator:
        """The model answering now (owned by the generator worker; replaceable, e.g. by a test's recorder)."""
        return self.generation.generator

    @generator.setter
    def generator(self, generator: Generator) -> None:
        self.generation.generator = generator

    @property
    def answering_model(self) -> str:
        """The model that answers in the current mode (harmonize mode's is the harmonizer, not the generator)."""
        settings = self.engine.settings
        return answering_model(settings.mode, self.generator, settings.harmony_style)

    @property
    def clock_source(self) -> str:
        """"external" (the DAW's MIDI clock), "link" (an Ableton Link session) or "internal" (the snapshot, takes,
        the tempo map)."""
        return self.clock.name

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def timed_output(self) -> bool:
        """Planned notes are handed to the output ahead and written at their frame (our JACK client)."""
        return self.scheduler.hands_ahead and self._ports.timed

    @property
    def error(self) -> BaseException | None:
        return self._error

    # --- what the outside calls ------------------------------------------------------------------------

    def post_intent(self, intent: object) -> None:
        """Queue a user intent (from the UI, a key, a CC mapping) for the engine thread."""
        self._inbox.put(("intent", intent))

    def inject(self, data: list[int]) -> None:
        """Raw MIDI from inside the process (the UI's computer-keyboard piano), treated exactly like port input."""
        self._inbox.put((list(data), time.monotonic_ns()))

    def add_log_listener(self, listener: Callable[[str, str], None]) -> None:
        self._listeners.append(listener)

    def log(self, level: str, text: str) -> None:
        self._log_lines.append((level, text))
        getattr(log, level if level in ("info", "warning", "error", "debug") else "info")(text)
        for listener in self._listeners:
            listener(level, text)

    def snapshot(self) -> dict[str, Any]:
        """A compact picture for the UI, built on the caller's thread from thread-safe reads (the engine thread
        only publishes its own small part): the piano roll's pairing never delays a note."""
        return self._snapshots.build(self, self._ports.snapshot(), self._log_lines)

    # --- threads -----------------------------------------------------------------------------------------

    def _guard(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as err:  # any thread's failure ends in note-offs, then the runtime stops
                self._thread_failed(err)

        return run

    def _thread_failed(self, err: BaseException) -> None:
        self._error = err
        log.exception("thread %s failed: %s", threading.current_thread().name, err)
        self.scheduler.panic()
        threading.Thread(target=self.close, name="companion-close", daemon=True).start()

    def _on_midi(self, data: list[int], time_ns: int) -> None:
        """rtmidi's thread: stamp and enqueue, nothing else."""
        self._inbox.put((data, time_ns))

    def _engine_loop(self) -> None:
        problem = try_realtime(ENGINE_PRIORITY)  # below the scheduler's: it must never wait on us
        if problem:
            self.log("info", f"engine thread at normal priority ({problem})")
        next_tick_ns = next_snapshot_ns = time.monotonic_ns()
        while True:
            timeout_s = max(0, next_tick_ns - time.monotonic_ns()) / 1e9
            try:
                item = self._inbox.get(timeout=timeout_s)
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            if item is not None:
                self._handle_item(item)
            now_ns = time.monotonic_ns()
            if now_ns >= next_tick_ns:
                timebase = self.clock.timebase()
                ticks = timebase.ticks_at(now_ns)
                self._apply(self.engine.tick(ticks))
                self._apply(self.presets.tick(self.engine, ticks))
                self._clock_control.follow()
                self.takes.follow_clock(ticks, timebase.bpm, self.clock_source != "internal")
                next_tick_ns = now_ns + ENGINE_TICK_NS
            if now_ns >= next_snapshot_ns:
                self._snapshots.publish(self.engine, self.presets)
                next_snapshot_ns = now_ns + SNAPSHOT_NS

    def _handle_item(self, item: Any) -> None:
        if isinstance(item, tuple) and item and item[0] == "intent":
            self._apply(self._intent(item[1]))
            return
        data, time_ns = item
        message = decode(data, self.decode_stats)
        if message is None:
            return
        if isinstance(message, _CLOCK_TYPES):
            self.clock.feed(message, time_ns)
            if isinstance(message, ClockStop | ClockStart):  # the DAW stopped (answers and harmony end now,
                # whichever clock) or started (bar 1 is now: generate plays again from there)
                self._apply(self.engine.handle(message, self.clock.timebase().ticks_at(time_ns)))
            return
        ticks = self.clock.timebase().ticks_at(time_ns)
        consumed, commands = self.presets.handle(self.engine, message, ticks)
        self._apply(commands)
        if consumed:  # a mapped CC or a bank Program Change is a control, not music
            return
        if isinstance(message, NoteOn | NoteOff):
            self._snapshots.wire_in.append((time_ns, data))
            if self.recorder is not None:
                self.recorder.note("player", data, ticks)
            if isinstance(message, NoteOn):
                self._snapshots.counters["notes_in"] += 1
        self._apply(self.engine.handle(message, ticks), time_ns)

    def _apply(self, commands: list[Command], arrival_ns: int | None = None) -> None:
        if self.harmony is None and self.engine.settings.mode == "harmonize":
            self._start_harmony()  # load and warm the model before the first melody note
        for command in commands:
            if isinstance(command, SendNow):
                self.scheduler.send_now(command.message)
            elif isinstance(command, ScheduleNotes):
                self.scheduler.submit(command.notes, command.tag)
            elif isinstance(command, RequestAnswer):
                command = self.presets.request(command)
                if "drums" in command.settings:  # the drum GAN is conditioned on the tempo
                    bpm = self.clock.timebase().bpm
                    command = dataclasses.replace(command, settings={**command.settings, "bpm": bpm})
                if self.recorder is not None:
                    self.recorder.answer(command)
                self._snapshots.counters["answers"] += 1
                self.log("info", describe_answer(command, self.answering_model))
                self.planned_answers.append((command.tag, command.start_ticks, command.end_ticks))
                self.generation.request(command)
            elif isinstance(command, Cancel):
                if command.how == "stop":
                    self.generation.cancel(command.tag)
                self.scheduler.cancel(command.tag, command.from_ticks, command.how)
                if self.recorder is not None:
                    self.recorder.cut(command.tag, command.from_ticks, command.how)
            elif isinstance(command, Panic):
                self.generation.cancel_all()
                self.scheduler.panic()
                self.log("info", f"all notes off ({command.reason})")
            elif isinstance(command, HarmonyCommand):
                self._start_harmony().submit(command, arrival_ns)
            elif isinstance(command, Log):
                self.log(command.level, command.text)

    def _start_harmony(self) -> HarmonyWorker:
        """Harmonize mode: the worker that owns the harmony model (it loads on the worker's own thread, once);
        a style of the other model (chorale <-> lead-sheet chords) swaps it for that model's worker."""
        style = self.engine.settings.harmony_style
        if self.harmony is not None and (style == "chorale") != (self.harmony.family == "chorale"):
            self.harmony.close()  # its notes end; the other model's worker takes over
            self.harmony = None
        if self.harmony is None:
            from companion.harmony.chord_worker import make_worker  # numpy and the chord vocabulary: only for harmony
            from companion.worker.harmony_process import remote_harmonizers

            chorale_loader = self._harmonizer_loader or (lambda: remote_harmonizers(log_line=self.log))
            self.harmony = make_worker(style, self.scheduler.send_now, chorale_loader, self._chord_loader,
                                       log_line=self.log, seed=self.engine.settings.seed).start()
        return self.harmony

    # --- presets and takes (engine thread, except the file writing) ---------------------------------------

    def _intent(self, intent: object) -> list[Command]:
        if type(intent).__name__ == "ChoosePorts":  # opening ports is slow: the supervisor thread does it
            self._ports.request(intent)
            return []
        if type(intent).__name__ == "SetClock":
            return self._clock_control.switch(str(getattr(intent, "source", "")))
        if type(intent).__name__ == "SetRecording":
            if getattr(intent, "on", False):
                self._start_take()
            else:
                self._stop_take()
            return []
        ticks = self.clock.timebase().ticks_at(time.monotonic_ns())
        commands = self.presets.intent(self.engine, intent, ticks)
        return self.engine.intent(intent) if commands is None else commands

    def _start_take(self) -> None:
        timebase = self.clock.timebase()
        self.takes.start(
            timebase.ticks_at(time.monotonic_ns()), bpm=timebase.bpm, beats_per_bar=timebase.beats_per_bar,
            beat_unit=timebase.beat_unit, settings=dataclasses.asdict(self.engine.settings),
            extras=self.presets.extras, preset=self.presets.preset, model=self.generator.name,
            checkpoint=getattr(self.generator, "checkpoint", None),
            clock=self.clock_source)

    def _stop_take(self) -> None:
        self.takes.stop(self.clock.timebase().ticks_at(time.monotonic_ns()),
                        {"lateness": self.scheduler.lateness_stats(),
                         "generation_ms": self.generation.last_first_note_ms})

    def _supervise(self) -> None:
        # Our lowest real-time rank: a normal-priority thread preempted holding the interpreter lock delays the
        # scheduler (companion bench inversion); this one wakes four times a second.
        try_realtime(HARMONY_PRIORITY)
        self.takes.recover()  # a take the last session lost in a crash, from its journal
        if self.scheduler.realtime_problem and not self._closed.wait(0.5):
            self.log("warning", f"scheduler: {self.scheduler.realtime_problem}")
        rounds = 0
        while not self._closed.wait(SUPERVISE_S):
            rounds += 1
            self._ports.apply_choices()
            self._ports.report_send_failures()
            self._ports.report_malformed(self.decode_stats)
            self._ports.report_missed_cycles()
            self.takes.write_pending()
            if rounds % PORT_CHECK_ROUNDS == 0:
                self._ports.check()

    def _send_bytes(self, data: Sequence[int]) -> None:
        """The scheduler's only output path (its own thread): every output port gets the bytes."""
        self._send_bytes_at(data, 0)

    def _send_bytes_at(self, data: Sequence[int], due_ns: int) -> None:
        """The same, placed at `due_ns` (monotonic) by a timed port (JACK); 0: now."""
        kind = data[0] & 0xF0
        if kind in (0x80, 0x90):
            self._snapshots.wire_out.append((due_ns or time.monotonic_ns(), data))
            if kind == 0x90 and data[2] > 0:
                self._snapshots.counters["notes_out"] += 1
        self._ports.send(data, due_ns)

    def _sent_note(self, data: list[int], ticks: int) -> None:
        """The scheduler sent a note message planned for `ticks`: a take keeps it at that tick (exact replays)."""
        if data[0] & 0xF0 == 0x90 and data[2] > 0:
            self.sent_note_ons.append((data[0] & 0x0F, data[1], ticks))
        if self.takes.recording:
            self.recorder.note("companion", data, ticks)
