"""The lead-sheet harmony worker: the chord model picks a chord symbol at each change line the moment the
melody note arrives, and the style voices it (pads, block chords, bass, comping and arpeggios on the clock).

It is the chorale worker's thread, queue, latency record and note sending (`HarmonyWorker`) with the chord
model in place of the chorale model: the same commands from harmonize mode, the same `change_every`, key lock,
clash guard and left-hand steering (a chord held on `chord_channel` is the chord played).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from companion.core.events import ChannelMessage, HarmonizeNote, HarmonyStep, NoteOff, ReleaseHarmony
from companion.core.modes.harmonize import HARMONY_TAG, HarmonyPulse, RevoiceNote, SteerHarmony
from companion.harmony.chord_plan import set_mode
from companion.harmony.chord_styles import CLOCK_STYLES, bar_steps, channels, chord_notes, slot_steps, strike
from companion.harmony.voicing import NoteKey
from companion.harmony.worker import VELOCITY_SCALE, HarmonyWorker
from companion.midi.realtime import HARMONY_PRIORITY
from models.chords import vocab
from models.chords.decode import FIT_WEIGHT, change_cost, live_phrase_end, note_fit

KEY_OUTSIDE_LIMIT = 1  # under the key lock a chord may hold one note outside the key (a secondary dominant)
WARMUP_SLOTS = 8

ChordLoader = Callable[[], Any]  # -> a models.chords.stepper.ChordStepper


def load_chord_model(path: str | None = None) -> Any:
    """The shipped chord model (numpy stepper); CheckpointError if unusable. Read without torch."""
    from companion.errors import CheckpointError
    from models.checkpoint_numpy import CheckpointFileError
    from models.chords.model import load_stepper

    try:
        return load_stepper(path)
    except CheckpointFileError as err:
        raise CheckpointError(f"{err}; the lead-sheet styles need the chord model (companion train harmony)") from None


_MASKS = np.array([[pc in vocab.chord_pcs(c) for pc in range(12)] for c in range(vocab.N_CHORDS)])
_RUBS = (np.roll(_MASKS, 1, axis=1) | np.roll(_MASKS, -1, axis=1)) & ~_MASKS


def match_chord(pcs: frozenset[int], lowest: int | None = None) -> int:
    """The chord symbol closest to held pitch classes (Jaccard; the lowest note as root breaks ties)."""
    held = np.array([pc in pcs for pc in range(12)])
    score = (_MASKS & held).sum(1) / (_MASKS | held).sum(1)
    if lowest is not None:
        score = score + 0.01 * (np.arange(vocab.N_CHORDS) // vocab.N_QUALITIES == lowest % 12)
    return int(np.argmax(score))


@functools.lru_cache(maxsize=32)  # a key lock's scale changes rarely: the note's path takes a cached mask
def key_allowed(key_pcs: frozenset[int] | None) -> np.ndarray:
    """(C,) chords the key lock allows: at most KEY_OUTSIDE_LIMIT tones outside the key (read-only)."""
    if not key_pcs:
        allowed = np.ones(vocab.N_CHORDS, dtype=bool)
        allowed.flags.writeable = False
        return allowed
    outside = _MASKS & ~np.array([pc in key_pcs for pc in range(12)])
    allowed = outside.sum(1) <= KEY_OUTSIDE_LIMIT
    allowed.flags.writeable = False
    return allowed


class ChordWorker(HarmonyWorker):
    """The harmony worker for the lead-sheet styles (see the module doc). `process` runs one command."""

    family = "chords"

    def __init__(self, send_now: Callable[[ChannelMessage, str], None], load: ChordLoader, *,
                 log_line: Callable[[str, str], None] | None = None, seed: int = 0,
                 now_ns: Callable[[], int] = time.monotonic_ns,
                 realtime_priority: int | None = HARMONY_PRIORITY,
                 on_chord: Callable[[str], None] | None = None) -> None:
        super().__init__(send_now, lambda: [], log_line=log_line, seed=seed, now_ns=now_ns,
                         realtime_priority=realtime_priority)
        self._load_chords = load
        self._on_chord = on_chord  # told each chord symbol as it starts sounding (offline: the markers)
        self.plan: dict[int, int] | None = None  # offline: a chord per slot decided over the whole melody
        self._live: Any = None
        self._chord: int | None = None  # the chord symbol of this change period
        self._voicing: list[NoteKey] = []  # its full voicing (what a clock style strikes from)
        self._steps: list[int] = []  # melody heard in the slot in progress, one pitch per 16th (-1 rest)
        self._step: int | None = None  # the next 16th step the model expects; None: no piece
        self._slot_start = 0
        self._frame: int | None = None
        self._struck = -1  # the last step a clock style struck on
        self.current: str | None = None  # the chord symbol sounding now, for the UI
        self.next: str | None = None  # the likeliest at the next slot, for the UI
        self._style = "pad"
        self.counts["changes"] = 0

    # --- loading ------------------------------------------------------------------------------------------

    MODEL_NAME = "chord model"

    def _load_and_warm(self) -> None:
        from models.chords.decode import LiveChords

        self._live = LiveChords(self._load_chords())
        for i in range(WARMUP_SLOTS):  # the first numpy calls are the slow ones: pay for them now
            self._live.choose(60 + i, i % 4, i, 1.0, key_allowed(None), phrase_end=i == 0)
            self._live.end_slot(np.array([60 + i]), i % 4)
        self._live.reset()

    def work_when_idle(self) -> bool:
        return False

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), "chord": self.current, "next_chord": self.next}

    # --- the model, slot by slot ----------------------------------------------------------------------------

    def _follow(self, step: int, soprano: int | None, settings: Any, key_pcs: frozenset[int] | None) -> None:
        """Bring the model to `step` (a new piece starts there), closing each slot passed."""
        per_slot = slot_steps(settings)
        if self._step is None or step < self._step or step - self._step > 4 * per_slot * 16:
            self._frame = vocab.major_frame(key_pcs) if key_pcs else None
            self._live.reset(self._frame or 0, set_mode(settings))
            self._step, self._steps, self._chord = step, [], None
            self.counts["pieces"] += 1
        while self._step < step:
            self._take_step(self._steps[-1] if self._steps else -1, per_slot, settings)
        if key_pcs and self._frame is None and not self._steps:
            self._frame = vocab.major_frame(key_pcs)
            self._live.frame = self._frame

    def _take_step(self, pitch: int, per_slot: int, settings: Any) -> None:
        self._steps.append(pitch)
        self._step += 1
        self.counts["steps"] += 1
        if self._step % per_slot == 0:  # the slot is over: the model hears it and the chord played
            pos = self._slot_pos(self._step - per_slot, settings)
            self._live.end_slot(np.array(self._steps), pos)
            self._steps = []
            self.next = self._likely_next(pitch, settings)

    def _likely_next(self, pitch: int, settings: Any) -> str | None:
        """The chord the next slot would bring if the melody stays on `pitch` (for the UI: "next")."""
        if self.plan is not None:
            chord = self.plan.get(self._step // slot_steps(settings))
            return None if chord is None else vocab.chord_name(chord)
        if pitch < 0:
            return self.current
        logp = self._live.log_probs(pitch, self._slot_pos(self._step, settings), keep=False)
        return vocab.chord_name(int(np.argmax(logp + FIT_WEIGHT * note_fit(pitch))))

    def _slot_pos(self, step: int, settings: Any) -> int:
        per_slot = slot_steps(settings)
        per_bar = max(1, settings.beats_per_bar * 16 // settings.beat_unit // per_slot)
        return (step // per_slot) % per_bar

    def _choose(self, pitch: int, step: int, settings: Any, key_pcs: frozenset[int] | None,
                chord_pcs: frozenset[int] | None, on_line: bool, held: bool = False) -> int:
        """The chord for this moment: the left hand's if it holds one, else the model's under the melody note."""
        if chord_pcs:
            return match_chord(chord_pcs)
        if self.plan is not None:
            return self.plan.get(step // slot_steps(settings), self._chord if self._chord is not None else 0)
        per_slot = slot_steps(settings)
        pos = self._slot_pos(step - step % per_slot, settings)
        cost = change_cost(pos, max(1, bar_steps(settings) // per_slot), settings.change_every) if on_line else np.inf
        cadence = live_phrase_end(pitch, pos, step // bar_steps(settings), self._live.tonic(), held)
        return self._live.choose(pitch, pos, self._chord, cost, key_allowed(key_pcs), phrase_end=cadence)

    # --- commands ---------------------------------------------------------------------------------------------

    def _on_note(self, command: HarmonizeNote, arrival_ns: int | None) -> None:
        settings = command.settings
        self.counts["notes"] += 1
        if command.step_index is None:
            self.counts["held"] += 1  # an ornament inside steps already taken: the harmony holds under it
            return
        self._follow(command.step_index, command.pitch, settings, command.key_pcs)
        held = self._chord
        rubs = held is not None and bool(_RUBS[held, command.pitch % 12])
        if command.may_change or held is None or rubs:  # a change line, or the clash guard
            self._set_chord(self._choose(command.pitch, command.step_index, settings, command.key_pcs,
                                         command.chord_pcs, command.may_change), command.pitch, settings)
        self._velocity = max(1, round(command.velocity * VELOCITY_SCALE))
        if settings.harmony_style in CLOCK_STYLES:
            sent = self._strike(command.step_index, settings, force=self._chord != held or not self._sounding)
        elif self._chord != held or not self._sounding or settings.harmony_style == "block":
            sent = self._voice(chord_notes(settings.harmony_style, self._chord, command.pitch,
                                           list(self._sounding), settings))
        else:
            sent = 0
            self.counts["held"] += 1
        if sent and arrival_ns is not None:
            self._latency_ns.append(self._now_ns() - arrival_ns)
        # --- after the send: the model hears the note ---
        self._take_step(command.pitch, slot_steps(settings), settings)

    def _on_revoice(self, command: RevoiceNote) -> None:
        """The left hand's chord came just after the melody note: it is the chord played, at once."""
        if self._step is None or not command.chord_pcs:
            return
        self._set_chord(match_chord(command.chord_pcs), command.pitch, command.settings)
        self.counts["revoiced"] += 1
        if command.settings.harmony_style in CLOCK_STYLES:
            self._strike(command.step_index, command.settings, force=True)
        else:
            self._voice(chord_notes(command.settings.harmony_style, self._chord, command.pitch,
                                    list(self._sounding), command.settings))

    def _on_steer(self, command: SteerHarmony) -> None:
        if self._step is None and command.key_pcs:
            self._frame = None  # the next piece starts in the new key's frame

    def _on_step(self, command: HarmonyStep) -> None:
        settings = command.settings
        if self._step is None:
            return
        if isinstance(command, HarmonyPulse):
            if settings.harmony_style in CLOCK_STYLES and self._chord is not None and command.step_index > self._struck:
                self._strike(command.step_index, settings, force=False)
            return
        if command.step_index < self._step:
            return  # a note already took this step
        self._follow(command.step_index, command.soprano, settings, command.key_pcs)
        if command.holding and command.may_change and self._chord is not None:
            chord = self._choose(command.soprano, command.step_index, settings, command.key_pcs, command.chord_pcs,
                                 True, held=True)
            if chord != self._chord:
                self._set_chord(chord, command.soprano, settings)
                self.counts["moves"] += 1  # a new chord on the line under a held melody note
                if settings.harmony_style in CLOCK_STYLES:
                    self._strike(command.step_index, settings, force=True)
                else:
                    self._voice(chord_notes(settings.harmony_style, chord, command.soprano, list(self._sounding),
                                            settings))
        self._take_step(command.soprano if command.holding else -1, slot_steps(settings), settings)

    def process(self, command: Any, arrival_ns: int | None = None) -> None:
        if isinstance(command, ReleaseHarmony) and self._style != "block":
            return  # the chord rings (or keeps its rhythm) through the melody's rests until it changes or ends
        if isinstance(command, HarmonizeNote | HarmonyStep):
            self._style = command.settings.harmony_style
        super().process(command, arrival_ns)

    # --- sound ------------------------------------------------------------------------------------------------

    def _set_chord(self, chord: int, soprano: int, settings: Any) -> None:
        if chord != self._chord:
            self.counts["changes"] += 1
        self._chord = chord
        self.current = vocab.chord_name(chord)
        if self._on_chord is not None:
            self._on_chord(self.current)
        self._voicing = chord_notes(settings.harmony_style, chord, soprano, self._voicing or list(self._sounding),
                                    settings)

    def _strike(self, step: int, settings: Any, force: bool) -> int:
        """A clock style's notes for this 16th (the chord's first strike when `force`): what sounded stops."""
        bar = max(1, settings.beats_per_bar * 16 // settings.beat_unit)
        notes = strike(settings.harmony_style, step % bar, self._voicing, settings, channels(settings)[1])
        if notes is None and force:
            notes = list(self._voicing) if settings.harmony_style == "comping" else self._voicing[:1]
        if notes is None:
            return 0
        self._struck = step
        for key in list(self._sounding):
            self._send_now(NoteOff(*key), HARMONY_TAG)
        self._sounding = {}
        return self._voice(notes)

    def _end_piece(self) -> None:
        self._step, self._chord, self._voicing, self.current, self.next = None, None, [], None, None


def make_worker(style: str, send_now: Callable[[ChannelMessage, str], None],
                chorale_loader: Callable[[], Sequence[Any]],
                chord_loader: ChordLoader | None, **kwargs: Any) -> HarmonyWorker:
    """The worker a harmony style needs: the chorale model's for "chorale", the chord model's for the others."""
    if style == "chorale":
        return HarmonyWorker(send_now, chorale_loader, **kwargs)
    return ChordWorker(send_now, chord_loader or load_chord_model, **kwargs)
