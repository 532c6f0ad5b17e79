"""The harmony worker's models: the one playing the phrase and fresh ones primed for the next, steered alike."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from companion.harmony.voicing import Voices

PRIMED_POSITIONS = 4  # a fresh model per 16th position in the beat, so a phrase starts with no reset on the note

Interrupted = Callable[[], bool]


class HarmonizerLike(Protocol):
    """What the worker needs of models.chorale.harmonizer.Harmonizer (a fake in tests may stand in)."""

    temperature: float
    key_lock: frozenset[int] | None
    octave_shift_semitones: int
    shift_changed: bool
    voice_ranges: list[tuple[int, int]]  # (low, high) of soprano, alto, tenor, bass

    def reset(self, seed: int = 0, *, position_in_beat: int = 0) -> None: ...
    def step(self, soprano: int | None) -> Voices: ...
    def finish_step(self, interrupted: Interrupted | None = None) -> bool: ...
    def set_key_lock(self, pitch_classes: Iterable[int] | None) -> None: ...
    def prepare(self, interrupted: Interrupted | None = None) -> bool: ...
    def chords_ready(self) -> bool: ...
    def redo_step(self, soprano: int | None) -> Voices | None: ...


class ModelPool:
    """Which model plays the phrase, and with what settings (the harmony worker's thread only).

    A phrase starts on a fresh model primed (reset, its first chords prepared) for its 16th position in the
    beat, so its first note is a table lookup. When a setting the prepared chords depend on changes (the
    steering: the left hand's chord or the key lock; the temperature), `prepare` rebuilds the active model's
    chords at once, off the melody note's path, and the primed models' between phrases; only a note that
    comes before that takes the model's one-soprano path.
    """

    def __init__(self, seed: int, on_error: Callable[[str], None]) -> None:
        self.seed = seed
        self.active: HarmonizerLike | None = None
        self.temperature: float | None = None  # the last phrase's settings: models are primed with them, so
        self.steering: frozenset[int] | None = None  # the first note of the next phrase finds its chords ready
        self._on_error = on_error
        self._spare: list[HarmonizerLike] = []  # models to reset before they can start a phrase
        self._primed: dict[int, tuple[HarmonizerLike, int]] = {}  # position in beat -> (fresh model, its seed)
        self._stale = False  # a setting changed since the chords of the models that may play next were prepared

    def load(self, models: list[HarmonizerLike]) -> None:
        """Take the loaded (warm) models and prime one per position in the beat."""
        self._spare = list(models)
        self.temperature = models[0].temperature
        while self.needs_priming():
            self.prime_one()

    def primed(self) -> list[HarmonizerLike]:
        return [model for model, _ in self._primed.values()]

    # --- the work done while the worker's inbox is empty -----------------------------------------------------

    def needs_work(self) -> bool:
        return self._stale or self.needs_priming()

    def work(self, interrupted: Interrupted) -> None:
        """Idle work: stale chords first (cheaper, and the models stay usable meanwhile), then priming one model."""
        if self._stale:
            self.prepare(interrupted)
        elif self.needs_priming():
            self.prime_one()

    def needs_priming(self) -> bool:
        return bool(self._spare) and len(self._primed) < PRIMED_POSITIONS

    def prime_one(self) -> None:
        position = next(p for p in range(PRIMED_POSITIONS) if p not in self._primed)
        model = self._spare.pop()
        try:
            self._carry_settings(model)
            model.reset(self.seed, position_in_beat=position)
        except Exception as err:  # noqa: BLE001 - this copy is dropped; the others keep harmony going
            self._on_error(f"a harmony model failed to reset ({type(err).__name__}: {err}); dropped")
            return
        self._primed[position] = (model, self.seed)

    # --- phrases ------------------------------------------------------------------------------------------------

    def start_phrase(self, step_index: int, settings: Any) -> HarmonizerLike:
        """A fresh model primed for this step's position in the beat becomes the active one."""
        if settings.seed != self.seed:  # primed for another seed: re-prime them when idle
            self.seed = settings.seed
            self._spare.extend(self.primed())
            self._primed.clear()
        if settings.temperature != self.temperature:
            self.temperature = settings.temperature
            self._stale = True  # the primed models take it when idle
        position = step_index % PRIMED_POSITIONS
        primed = self._primed.pop(position, None)
        if primed is not None and primed[1] == self.seed:
            model = primed[0]
        else:  # not primed yet (or for another seed): reset now, on the note, once
            if primed is not None:
                self._spare.append(primed[0])
            model = self._spare.pop() if self._spare else self._primed.pop(next(iter(self._primed)))[0]
            self._carry_settings(model)
            model.reset(self.seed, position_in_beat=position)
        self._carry_settings(model)  # primed before a change: its first step takes the slow path
        self.active = model
        return model

    def end_phrase(self) -> None:
        """The active model goes back to be re-primed when idle; the primed ones take the settings now."""
        if self.active is not None:
            self._spare.append(self.active)
            self.active = None
            self._stale = True

    # --- steering -----------------------------------------------------------------------------------------------

    def steer(self, key_pcs: frozenset[int] | None, chord_pcs: frozenset[int] | None) -> None:
        """The left hand's chord, when held, limits the voices to its tones; otherwise the key lock does.

        Only noted here (a burst of chord notes costs nothing): `ready` gives it to the model about to play,
        `prepare` to every model with its chords rebuilt."""
        wanted = chord_pcs or key_pcs
        if wanted != self.steering:
            self.steering = wanted
            self._stale = True

    def unfinished(self) -> None:
        """The active model's next chords were left part-built (a command came): finish them when idle."""
        self._stale = True

    def ready(self, model: HarmonizerLike) -> None:
        """The model about to play takes the steering (if `prepare` has not yet, its next step is the slow one)."""
        if model.key_lock != self.steering:
            model.set_key_lock(self.steering)

    def prepare(self, interrupted: Interrupted) -> bool:
        """Give the models that may play next the latest settings and rebuild their chords: the active one during
        a phrase (the primed ones are not needed before it ends), else the primed ones. Stops as soon as
        `interrupted()` says so (a command is waiting: a melody note must not wait for this). True when done."""
        for model in [self.active] if self.active is not None else self.primed():
            if interrupted():
                return False
            try:
                self._carry_settings(model)
                if not model.prepare(interrupted):
                    return False
            except Exception as err:  # noqa: BLE001 - the model's note path still works with a stale table
                self._on_error(f"a harmony model failed to prepare its chords ({type(err).__name__}: {err})")
        self._stale = False
        return True

    def close(self) -> None:
        """Models that run in another process stop it (`close`, on the stand-ins of one process: once is enough)."""
        for model in {id(m): m for m in [self.active, *self._spare, *self.primed()] if m is not None}.values():
            close = getattr(model, "close", None)
            if close is not None:
                close()

    def _carry_settings(self, model: HarmonizerLike) -> None:
        """The latest temperature and steering (a model prepares its chords with them)."""
        if self.temperature is not None:
            model.temperature = self.temperature
        self.ready(model)
