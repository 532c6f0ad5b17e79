"""The harmony worker: a thread that owns the chorale model and voices each melody note the moment it arrives."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from companion.core.events import (
    ChannelMessage,
    HarmonizeNote,
    HarmonyCommand,
    HarmonyStep,
    NoteOff,
    NoteOn,
    ReleaseHarmony,
    StopHarmony,
)
from companion.core.modes.harmonize import HARMONY_TAG, RevoiceNote, SteerHarmony
from companion.core.theory import pitch_name
from companion.harmony.pool import PRIMED_POSITIONS, HarmonizerLike, ModelPool
from companion.harmony.voicing import NoteKey, Voices, chord_voices, clashes, voice_notes
from companion.midi.realtime import HARMONY_PRIORITY, loading_models, normal_priority, try_realtime

log = logging.getLogger("companion")

VELOCITY_SCALE = 0.8  # the harmony sits a little under the melody
MAX_FILL_STEPS = 64  # a gap longer than this (a stalled machine) starts a fresh piece instead of catching up
LATENCY_CAPACITY = 4096
STALE_NOTE_NS = 250_000_000  # harmony this late (the model was still loading, the machine stalled) stays silent
WARMUP_STEPS = 24
_STOP = object()


__all__ = ["HarmonizerLike", "HarmonyWorker", "Loader", "load_harmonizers", "warm_up"]

Loader = Callable[[], Sequence[HarmonizerLike]]


def load_harmonizers(path: str | Path | None = None, count: int = PRIMED_POSITIONS,
                     threads: int | None = 1) -> list[HarmonizerLike]:
    """`count` harmonizers sharing one network (default: the shipped checkpoint); CheckpointError if unusable.

    Imports torch here, so nothing heavy loads until harmony is used. One intra-op thread is the fastest for
    one-chord steps on a small CPU (and leaves the other core to the MIDI threads).
    """
    import torch

    from companion.errors import CheckpointError
    from models.checkpoint import CheckpointFileError
    from models.chorale.harmonizer import Harmonizer

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        first = Harmonizer.load(path)
    except CheckpointFileError as err:
        raise CheckpointError(f"{err}; harmony needs the chorale model (companion train harmonizer)") from None
    return [first] + [Harmonizer(first.net, first.vocab, first.voice_ranges, first.meta,
                                 temperature=first.temperature, avoid_parallels=first.avoid_parallels,
                                 avoid_crossing=first.avoid_crossing) for _ in range(count - 1)]


def warm_up(model: HarmonizerLike, seed: int = 0) -> None:
    """First calls into torch are slow: pay for them at load, not on a note (the model is reset after)."""
    model.reset(seed)
    for i in range(WARMUP_STEPS):
        model.step(60 + (i // 2) % 12)
        model.finish_step()


# --- the worker ----------------------------------------------------------------------------------------------


class HarmonyWorker:
    """Runs the harmony model off every timing thread: melody note in, harmony notes out through `send_now`.

    Commands come in order from the engine thread (`submit`); a note's harmony is sent before anything else
    is done (the model's `finish_step`, logging, re-priming models for the next phrase happen after). A new
    left-hand chord or key (`SteerHarmony`) has the models' chords rebuilt the moment it comes, so the melody
    note after it is still a lookup; a command that comes meanwhile stops that work where it is.
    `process` is the thread's work and can be called directly (tests) after `load()`.
    """

    family = "chorale"  # the model it plays (runtime swaps workers when the style needs the other)

    def __init__(self, send_now: Callable[[ChannelMessage, str], None], load: Loader, *,
                 log_line: Callable[[str, str], None] | None = None, seed: int = 0,
                 now_ns: Callable[[], int] = time.monotonic_ns,
                 realtime_priority: int | None = HARMONY_PRIORITY) -> None:
        self._send_now = send_now
        self._load = load
        self._log_line = log_line or (lambda level, text: getattr(log, level, log.info)(text))
        self._now_ns = now_ns
        self._realtime_priority = realtime_priority
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.failed: str | None = None
        self._models = ModelPool(seed, self._model_error)
        self._model_step = 0  # the next 16th step the active model expects
        self._last_soprano: int | None = None
        self._sounding: dict[NoteKey, None] = {}  # ordered set of the harmony notes we sounded
        self._last_voices: Voices | None = None  # the chord of this change period (a detached note finds it again)
        self._velocity = 64
        self._latency_ns: deque[int] = deque(maxlen=LATENCY_CAPACITY)
        self.counts = dict.fromkeys(("notes", "held", "moves", "revoiced", "quick", "unready", "steps", "pieces",
                                     "late", "errors"), 0)

    # --- life cycle (any thread) ---------------------------------------------------------------------------

    def start(self) -> HarmonyWorker:
        """Start the thread; it loads and warms the model, then takes commands (queued ones wait)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="companion-harmony", daemon=True)
            self._thread.start()
        return self

    def submit(self, command: HarmonyCommand, arrival_ns: int | None = None) -> None:
        """Queue a command; `arrival_ns` is when the melody note reached the input callback (for latency)."""
        self._inbox.put((command, arrival_ns))

    def close(self, timeout_s: float = 2.0) -> None:
        """Silence the harmony and stop the thread (idempotent)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._inbox.put(_STOP)
            if thread is not threading.current_thread():
                thread.join(timeout=timeout_s)
        else:
            self._silence()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the model is loaded and warm (False on a timeout or a load failure)."""
        return self._ready.wait(timeout_s) and self.failed is None

    def latency_stats(self) -> dict[str, float]:
        """Melody note arrival -> last harmony note handed to the scheduler: p50/p99/max in ms, and n."""
        samples = sorted(self._latency_ns)
        if not samples:
            return {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        n = len(samples)
        return {"n": n, "p50_ms": samples[(n - 1) // 2] / 1e6, "p99_ms": samples[min(n - 1, 99 * n // 100)] / 1e6,
                "max_ms": samples[-1] / 1e6}

    def sounding(self) -> list[NoteKey]:
        return list(self._sounding)

    def snapshot(self) -> dict[str, Any]:
        return {"ready": self._ready.is_set() and self.failed is None, "failed": self.failed,
                "sounding": len(self._sounding), "latency": self.latency_stats(), **self.counts}

    # --- the thread ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        normal_priority()  # not the real-time one inherited from the engine thread that started us
        self.load()  # at normal priority: loading is long and must not starve the UI
        problem = try_realtime(self._realtime_priority)
        if problem is not None and self._realtime_priority is not None:
            self._log_line("info", f"harmony worker at normal priority ({problem})")
        while True:
            try:
                item = self._inbox.get_nowait() if self._models.needs_work() else self._inbox.get()
            except queue.Empty:
                self.work_when_idle()
                continue
            if item is _STOP:
                self._silence()
                self._models.close()
                return
            self.process(*item)

    MODEL_NAME = "harmony model"  # as the log names it when it fails to load

    def load(self) -> None:
        """Load, warm and prime the models (on the worker's thread); a failure is logged, harmony stays off."""
        try:
            with loading_models():  # no collector pause on the other threads while it loads
                self._load_and_warm()
        except Exception as err:  # noqa: BLE001 - any load failure turns harmony off with a message, never a crash
            self.failed = f"the {self.MODEL_NAME} could not be loaded, harmony is off: {err}"
            self._log_line("error", self.failed)
        finally:
            self._ready.set()

    def _load_and_warm(self) -> None:
        models = list(self._load())
        if not models:
            raise ValueError("the harmony loader returned no model")
        if not getattr(models[0], "runs_elsewhere", False):  # a model in another process warmed itself there
            warm_up(models[0], self._models.seed)
        self._models.load(models)

    def work_when_idle(self) -> bool:
        """What the thread does while no command waits: rebuild a stale chord table, or prime a fresh model for
        the next phrase (one piece of work, stopped as soon as a command comes). False when nothing is left."""
        if not self._models.needs_work():
            return False
        self._models.work(self._waiting)
        return True

    def _waiting(self) -> bool:
        return not self._inbox.empty()

    def _model_error(self, text: str) -> None:
        self.counts["errors"] += 1
        self._log_line("error", text)

    def process(self, command: HarmonyCommand, arrival_ns: int | None = None) -> None:
        """One command, in order. A model failure loses this note's harmony, never the session."""
        if self.failed is not None or not self._ready.is_set():
            if isinstance(command, ReleaseHarmony | StopHarmony):
                self._silence()
            return
        try:
            if isinstance(command, RevoiceNote):  # before HarmonizeNote: it rides that type to get here
                self._on_revoice(command)
            elif isinstance(command, HarmonizeNote):
                self._on_note(command, arrival_ns)
            elif isinstance(command, SteerHarmony):  # before HarmonyStep: it rides that type to get here
                self._on_steer(command)
            elif isinstance(command, HarmonyStep):
                self._on_step(command)
            elif isinstance(command, ReleaseHarmony):
                self._silence()
            elif isinstance(command, StopHarmony):
                self._silence()
                self._end_piece()
        except Exception as err:  # noqa: BLE001 - logged, the harmony silenced, the next note starts afresh
            self.counts["errors"] += 1
            self._log_line("error", f"the harmony model failed ({type(err).__name__}: {err}); harmony restarts")
            self._silence()
            self._end_piece()

    # --- commands ---------------------------------------------------------------------------------------------

    def _on_note(self, command: HarmonizeNote, arrival_ns: int | None) -> None:
        """Voice a melody note at once. On a change line (`may_change`) it gets the model's new chord; between
        lines the chord of the period rings on under it, or is struck again under a detached note, so the
        harmony changes at most every `change_every`. One exception, a clash guard: a held chord that would
        rub against the note (a semitone or a major seventh, or a voice at or above the melody; see
        `voicing.clashes`) gives way to the model's chord for this note, even between lines."""
        settings = command.settings
        self.counts["notes"] += 1
        self._models.steer(command.key_pcs, command.chord_pcs)
        if command.step_index is None:
            self.counts["held"] += 1  # an ornament inside steps already taken: the harmony holds under it
            return
        model = self._model_for(command.step_index, settings)
        self._models.ready(model)  # a steering change not announced before: this note takes the slow path
        self._fill_to(model, command.step_index)
        # the left hand took a chord a moment ago and the model's chords for it are not built yet: the note
        # gets that chord voiced at once, and the model takes its step after the send
        quick = command.chord_pcs is not None and not model.chords_ready()
        if quick:
            self.counts["quick"] += 1
            voices = chord_voices(command.pitch, command.chord_pcs, self._last_voices, model.voice_ranges)
        else:
            # chords not built yet: the model's one-soprano path here, a rule voicing for a model in its own process
            self.counts["unready"] += not model.chords_ready()
            voices = model.step(command.pitch)
        if arrival_ns is not None and self._now_ns() - arrival_ns > STALE_NOTE_NS:
            self.counts["late"] += 1  # the model still hears it, but harmony this late would sound wrong
            self._hear(model, command.pitch, take_step=quick)
            return
        held = [p for _, p in self._sounding]
        again = None if held or self._last_voices is None else voice_notes(settings, command.pitch, self._last_voices)
        if not command.may_change and held and not clashes(command.pitch, held, settings.harmony_style):
            self.counts["held"] += 1  # between chord changes the chord rings on under the new melody note
        else:
            if command.may_change or not again or clashes(command.pitch, [p for _, p in again],
                                                                settings.harmony_style):
                again = voice_notes(settings, command.pitch, voices)
                self._last_voices = voices
            else:
                self.counts["held"] += 1  # a detached note between changes: the same chord again
            self._velocity = max(1, round(command.velocity * VELOCITY_SCALE))
            if self._voice(again) and arrival_ns is not None:
                self._latency_ns.append(self._now_ns() - arrival_ns)
        self._hear(model, command.pitch, take_step=quick)  # after the send: off the critical path

    def _on_steer(self, command: SteerHarmony) -> None:
        self._models.steer(command.key_pcs, command.chord_pcs)
        self._models.prepare(self._waiting)  # now, so that the next note is a lookup

    def _on_revoice(self, command: RevoiceNote) -> None:
        """The left hand's chord came just after the melody note: the model takes that note's step again under
        it and the sounding harmony moves to the new chord (new notes first, then note-offs for the voices
        that changed; common tones ring on). Skipped while another command waits (the next note of the same
        chord re-voices), or once the model has moved on: the new chord then steers the coming steps only."""
        self._models.steer(command.key_pcs, command.chord_pcs)
        model = self._models.active
        if model is None or self._waiting() or not self._sounding or command.step_index != self._model_step - 1:
            self._models.prepare(self._waiting)
            return
        self._models.ready(model)
        voices = model.redo_step(command.pitch)
        if voices is None:  # the step can no longer be taken back
            self._models.prepare(self._waiting)
            return
        self._last_voices = voices
        wanted = voice_notes(command.settings, command.pitch, voices)
        if set(wanted) != set(self._sounding):
            self.counts["revoiced"] += 1
            self._voice(wanted)
        model.finish_step()

    def _on_step(self, command: HarmonyStep) -> None:
        self._models.steer(command.key_pcs, command.chord_pcs)
        model = self._models.active
        if model is None or command.step_index < self._model_step:
            return  # no phrase in progress, or a note already took this step
        self._models.ready(model)
        self._fill_to(model, command.step_index)
        voices = model.step(command.soprano)
        if command.holding and command.may_change and self._sounding:
            wanted = voice_notes(command.settings, command.soprano, voices)
            self._last_voices = voices
            if set(wanted) != set(self._sounding):
                self.counts["moves"] += 1  # the model moves a voice on the beat under a held melody note
                self._voice(wanted)
        self._advance(model, command.soprano)

    # --- the model ---------------------------------------------------------------------------------------------

    def _model_for(self, step_index: int, settings: Any) -> HarmonizerLike:
        """The active model, or a fresh one primed for this step's position in the beat (a new phrase)."""
        model = self._models.active
        if model is None:
            model = self._models.start_phrase(step_index, settings)
            self._model_step = step_index
            self._last_soprano = None
            self.counts["pieces"] += 1
        return model

    def _fill_to(self, model: HarmonizerLike, step_index: int) -> None:
        """Steps the engine did not hand over in time (rare): the model hears the last soprano held."""
        if step_index - self._model_step > MAX_FILL_STEPS:
            self._model_step = step_index  # too far to catch up: the model's beat position stays right
        while self._model_step < step_index:
            self._hear(model, self._last_soprano, take_step=True)

    def _hear(self, model: HarmonizerLike, soprano: int | None, *, take_step: bool) -> None:
        """The model moves past a step: it takes the step first when the note was voiced without it (a quick
        voicing of the left hand's chord: it hears the note under that chord, in its own voicing; a step the
        engine did not hand over), then builds the next chords. A change of octave shift is logged."""
        if take_step:
            model.step(soprano)
        shift_changed = model.shift_changed
        self._advance(model, soprano)
        if shift_changed and soprano is not None:
            self._log_shift(soprano, model.octave_shift_semitones)

    def _advance(self, model: HarmonizerLike, soprano: int | None) -> None:
        if not model.finish_step(self._waiting):  # a command came: it is served first, the chords finished after
            self._models.unfinished()
        self._model_step += 1
        self._last_soprano = soprano
        self.counts["steps"] += 1

    def _end_piece(self) -> None:
        self._last_voices = None
        self._models.end_phrase()

    # --- sound ---------------------------------------------------------------------------------------------------

    def _voice(self, wanted: list[NoteKey]) -> int:
        """Move from the sounding notes to `wanted`: new notes first (they are what the player waits for),
        then note-offs; notes in both ring on untouched (common tones are tied). Returns the note-ons sent."""
        new = dict.fromkeys(wanted)
        old = self._sounding
        ons = 0
        for channel, pitch in new:
            if (channel, pitch) not in old:
                self._send_now(NoteOn(channel, pitch, self._velocity), HARMONY_TAG)
                ons += 1
        self._sounding = new
        for channel, pitch in old:
            if (channel, pitch) not in new:
                self._send_now(NoteOff(channel, pitch), HARMONY_TAG)
        return ons

    def _silence(self) -> None:
        sounding, self._sounding = self._sounding, {}
        for channel, pitch in sounding:
            self._send_now(NoteOff(channel, pitch), HARMONY_TAG)

    def _log_shift(self, pitch: int, shift: int) -> None:
        if shift == 0:
            self._log_line("info", f"harmony: the melody is back in the chorale range at {pitch_name(pitch)}")
            return
        octaves = abs(shift) // 12
        direction = "up" if shift > 0 else "down"
        where = ("the harmony follows it down as far as its bass allows (no voice below E1)" if shift > 0
                 else "the voices stay in their ranges under it")
        self._log_line("info", f"harmony: at {pitch_name(pitch)} the model hears the melody {octaves} "
                               f"octave{'s' if octaves > 1 else ''} {direction}, inside the chorale range it knows; "
                               f"{where}")
