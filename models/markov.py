"""A Continuator-style variable-order Markov responder over the session's phrases (stdlib only)."""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

NoteTuple = tuple[int, int, int, int]  # (pitch, velocity, onset_ticks, duration_ticks)


@dataclass(frozen=True, slots=True)
class _Event:
    """One onset of the player's: the top voice indexes the model, everything else rides along with it.

    Chords are kept as chord events (not reduced to the top voice): `below` holds the other chord tones as
    offsets under the top pitch, so a chord the player struck comes back as a chord. Rhythm and dynamics
    stay attached to the pitch event, as in the Continuator, so an answer borrows the player's feel.
    """

    pitch: int
    below: tuple[int, ...]  # negative semitone offsets of the other chord tones
    velocity: int
    onset_q: float  # quarters from the phrase start (a bar line), for the metric grid
    ioi_q: float | None  # quarters from this onset to the next one (rests included); None: the phrase's last
    duration_q: float  # quarters the top voice sounds


def _events(notes: Sequence[NoteTuple], ppq: int, chord_window_ticks: int) -> list[_Event]:
    """Group notes whose onsets fall within `chord_window_ticks` of a group's first onset."""
    ordered = sorted(notes, key=lambda n: (n[2], -n[0]))
    groups: list[list[NoteTuple]] = []
    for note in ordered:
        if groups and note[2] - groups[-1][0][2] <= chord_window_ticks:
            groups[-1].append(note)
        else:
            groups.append([note])
    onsets = [g[0][2] for g in groups]
    iois: list[int | None] = [b - a for a, b in zip(onsets, onsets[1:], strict=False)]
    iois.append(None)
    events: list[_Event] = []
    for i, group in enumerate(groups):
        top = max(group, key=lambda n: n[0])
        below = tuple(sorted({n[0] - top[0] for n in group if n[0] != top[0]}))
        ioi = iois[i]
        velocity = max(n[1] for n in group)
        ioi_q = None if ioi is None else ioi / ppq
        events.append(_Event(top[0], below, velocity, onsets[i] / ppq, ioi_q, max(top[3], 1) / ppq))
    return events


def _snap(pitch: int, allowed: Sequence[int]) -> int:
    """Nearest pitch whose class is allowed (ties go down), kept in 0..127."""
    if not allowed or pitch % 12 in allowed:
        return pitch
    for distance in range(1, 12):
        for candidate in (pitch - distance, pitch + distance):
            if 0 <= candidate <= 127 and candidate % 12 in allowed:
                return candidate
    return pitch


class MarkovResponder:
    """Learns the phrases it hears and answers with a variable-order continuation.

    The model is a set of prefix indexes over top-voice pitch sequences, orders 1..`max_order`: each
    context maps to the events that followed it. An answer extends the prompt's ending by the longest
    context that has continuations, backing off to shorter ones, then to a transposed interval seen after
    the same pitch class, then to a step in the key's scale. To sound like an answer and not a copy, a
    continuation that would make the answer repeat more than `max_copy` pitches in a row of anything in
    memory (the prompt included) is refused, so the longest contexts serve to stay in style while the
    answer keeps recombining. Rhythm: each event brings its inter-onset interval measured on the
    player's metric grid, so answers stay on the beat. Memory holds the last `max_phrases` phrases.
    """

    def __init__(self, max_order: int = 4, max_phrases: int = 64, max_copy: int = 4) -> None:
        if max_order < 1:
            raise ValueError(f"max_order must be at least 1, got {max_order!r}")
        if max_copy < 1:
            raise ValueError(f"max_copy must be at least 1, got {max_copy!r}")
        self.max_order = max_order
        self.max_phrases = max_phrases
        self.max_copy = max_copy
        self._index_order = max(max_order, max_copy)
        self._phrases: deque[list[_Event]] = deque()
        self._index: list[dict[tuple[int, ...], list[tuple[int, int]]]] = []
        self._by_pitch_class: dict[int, list[tuple[int, int]]] = {}
        self._last_learned: tuple[NoteTuple, ...] | None = None
        self._rebuild()

    # --- learning ----------------------------------------------------------------------------------

    @property
    def phrase_count(self) -> int:
        return len(self._phrases)

    def learn(self, phrase: Iterable[NoteTuple], ppq: int = 480) -> None:
        """Add a phrase: (pitch, velocity, onset_ticks, duration_ticks) with onsets from the phrase start.

        Onsets should count from the bar line the phrase starts on, so the model hears where in the beat
        each note fell. The phrase learned last is not learned again if it comes back unchanged.
        """
        notes = _as_tuples(phrase)
        if not notes or notes == self._last_learned:
            return  # the same phrase back to back (a regenerate): learning it twice skews the counts
        self._last_learned = notes
        events = _events(notes, ppq, chord_window_ticks=max(1, ppq // 12))[:1024]
        self._phrases.append(events)
        if len(self._phrases) > self.max_phrases:
            self._phrases.popleft()
            self._rebuild()  # phrase numbers shift; rebuilding is cheap at this size
        else:
            self._add_to_index(len(self._phrases) - 1, events)

    def _rebuild(self) -> None:
        self._index = [{} for _ in range(self._index_order + 1)]  # slot 0 unused
        self._by_pitch_class = {}
        for number, events in enumerate(self._phrases):
            self._add_to_index(number, events)

    def _add_to_index(self, number: int, events: list[_Event]) -> None:
        pitches = [e.pitch for e in events]
        for j in range(1, len(events)):
            self._by_pitch_class.setdefault(pitches[j - 1] % 12, []).append((number, j))
            for order in range(1, min(self._index_order, j) + 1):
                self._index[order].setdefault(tuple(pitches[j - order : j]), []).append((number, j))

    # --- answering ---------------------------------------------------------------------------------

    def respond(
        self,
        prompt_notes: Iterable[NoteTuple],
        length_ticks: int,
        ppq: int = 480,
        key_pcs: set[int] | frozenset[int] | None = None,
        seed: int = 0,
        temperature: float = 1.0,
        bar_ticks: int | None = None,
    ) -> list[NoteTuple]:
        """An answer to `prompt_notes` filling `length_ticks`, onsets from the answer start (a bar line).

        The prompt is learned first unless it is the phrase learned last. Deterministic for a seed. The
        walk goes on to the answer's end at the player's pace (bars of `bar_ticks`, default 4 quarters):
        a rest lasts at most a bar and the last bar always sounds. Pitches outside `key_pcs` are snapped
        into it; no note sounds past `length_ticks`.
        """
        prompt = _as_tuples(prompt_notes)
        if prompt and prompt != self._last_learned:
            self.learn(prompt, ppq)
        if not self._phrases or length_ticks <= 0:
            return []
        rng = random.Random(seed)
        temperature = min(max(temperature, 0.05), 5.0)
        allowed = sorted({pc % 12 for pc in key_pcs}) if key_pcs else []
        prompt_events = _events(prompt, ppq, max(1, ppq // 12)) if prompt else []
        context = [e.pitch for e in prompt_events][-self._index_order :]
        low, high = self._pitch_range()
        grid_ticks = self._grid_ticks(prompt, ppq)
        slots = max(1, ppq // grid_ticks)  # grid positions per quarter
        groove = self._groove(prompt, grid_ticks, slots)
        steps_from_slot: dict[int, list[int]] = {}
        for events in self._phrases:
            for e in events:
                e_step = self._grid_step(e, ppq, grid_ticks)
                if e_step is not None:
                    e_slot = round(e.onset_q * ppq / grid_ticks) % slots
                    steps_from_slot.setdefault(e_slot, []).append(e_step)
        if not context:
            first = rng.choice(self._phrases)[0]
            context = [first.pitch]

        answer: list[NoteTuple] = []
        bar_ticks = max(grid_ticks, bar_ticks or 4 * ppq)
        last_bar = (length_ticks - 1) // bar_ticks * bar_ticks  # the answer's last bar line: it must sound
        longest_step = bar_ticks // grid_ticks * grid_ticks  # a rest lasts a bar at most
        too_short = max(1, ppq // 16)  # no note starts this close to the answer's end
        position_ticks = 0  # on the grid; the player's groove is added per onset
        while True:
            onset = max(0, position_ticks + groove.get((position_ticks // grid_ticks) % slots, 0))
            if position_ticks >= last_bar:
                onset = max(onset, last_bar)  # no rushing out of the last bar
            if length_ticks - onset < too_short:
                break
            slot = (position_ticks // grid_ticks) % slots

            def weigh(candidate: _Event, slot: int = slot) -> float:
                # An event played at the same place in the beat fits here best (its step, its accent).
                return 4.0 if round(candidate.onset_q * ppq / grid_ticks) % slots == slot else 1.0

            event, pitch = self._choose(context, weigh, rng, temperature, allowed, low, high)
            velocity = min(127, max(1, event.velocity + round(rng.gauss(0.0, 3.0 * temperature))))
            duration = min(max(1, round(event.duration_q * ppq)), length_ticks - onset)
            chord = {pitch} | {
                _snap(pitch + offset, allowed) for offset in event.below if 0 <= pitch + offset
            }
            for p in sorted(chord):
                if 0 <= p <= 127:
                    answer.append((p, velocity, onset, duration))
            context = (context + [pitch])[-self._index_order :]
            # The step as the player played it on the grid (quantized onsets, differenced: no drift); an
            # event borrowed from another place in the beat takes a step the player took from this place.
            own_step = self._grid_step(event, ppq, grid_ticks)
            if own_step is not None and (weigh(event) > 1.0 or not steps_from_slot.get(slot)):
                step = own_step
            elif steps_from_slot.get(slot):
                step = rng.choice(steps_from_slot[slot])
            else:  # the phrase's last note, from a place in the beat the player never left: its own length
                step = max(1, round(event.duration_q * ppq / grid_ticks))
            # Rests as the player's, up to a bar; a step that would skip the last bar lands in it instead.
            step_ticks = min(step * grid_ticks, longest_step)
            if position_ticks < last_bar and position_ticks + step_ticks >= length_ticks - too_short:
                step_ticks = max(grid_ticks, -(-(last_bar - position_ticks) // grid_ticks) * grid_ticks)
            position_ticks += step_ticks
        return _untangle(answer)

    def _choose(
        self,
        context: list[int],
        weigh: Callable[[_Event], float],
        rng: random.Random,
        temperature: float,
        allowed: Sequence[int],
        low: int,
        high: int,
    ) -> tuple[_Event, int]:
        """Pick the next event and the pitch it takes here."""
        levels = []
        for order in range(min(self.max_order, len(context)), 0, -1):
            found = self._index[order].get(tuple(context[-order:]))
            if found:
                levels.append(found)
        # Now and then take a shorter context on purpose: more surprise, less recitation.
        if len(levels) > 1 and rng.random() < min(0.6, 0.2 * temperature):
            levels = levels[1:]
        banned = self._copying_pitches(context)
        for candidates in levels:
            usable = [(n, j) for n, j in candidates if self._phrases[n][j].pitch not in banned]
            if usable:
                number, j = self._sample(usable, weigh, rng, temperature)
                event = self._phrases[number][j]
                return event, self._fit(event.pitch, allowed, low, high)
        last = context[-1]
        transposable = [
            (n, j)
            for n, j in self._by_pitch_class.get(last % 12, [])
            if last + self._phrases[n][j].pitch - self._phrases[n][j - 1].pitch not in banned
        ]
        if transposable:
            number, j = self._sample(transposable, weigh, rng, temperature)
            events = self._phrases[number]
            pitch = last + events[j].pitch - events[j - 1].pitch
            return events[j], self._fit(pitch, allowed, low, high)
        # Nothing to go on: borrow a rhythm from memory and step through the scale toward the middle.
        events = rng.choice(self._phrases)
        event = rng.choice(events)
        scale = allowed or sorted({e.pitch % 12 for es in self._phrases for e in es})
        direction = 1 if last < (low + high) // 2 else -1
        if rng.random() < 0.3:
            direction = -direction
        step = rng.choice((1, 1, 2))
        for turn in (direction, -direction):
            pitch = last
            for _ in range(step):
                pitch += turn
                while scale and pitch % 12 not in scale:
                    pitch += turn
            if pitch not in banned:
                break
        return event, self._fit(pitch, allowed, low, high)

    @staticmethod
    def _grid_step(event: _Event, ppq: int, grid_ticks: int) -> int | None:
        """Grid units from this event's onset to the next, both quantized (at least one); None if last."""
        if event.ioi_q is None:
            return None
        start = round(event.onset_q * ppq / grid_ticks)
        return max(1, round((event.onset_q + event.ioi_q) * ppq / grid_ticks) - start)

    def _copying_pitches(self, context: list[int]) -> set[int]:
        """Pitches that would make the last `max_copy` + 1 pitches a literal copy of something in memory."""
        if len(context) < self.max_copy:
            return set()
        found = self._index[self.max_copy].get(tuple(context[-self.max_copy :]), [])
        return {self._phrases[n][j].pitch for n, j in found}

    def _sample(
        self,
        candidates: list[tuple[int, int]],
        weigh: Callable[[_Event], float],
        rng: random.Random,
        temperature: float,
    ) -> tuple[int, int]:
        """Choose a pitch with weight (summed occurrence weights)^(1/T), then one of its occurrences."""
        by_pitch: dict[int, list[tuple[int, int]]] = {}
        for number, j in candidates:
            by_pitch.setdefault(self._phrases[number][j].pitch, []).append((number, j))
        pitches = list(by_pitch)
        occurrence_weights = {p: [weigh(self._phrases[n][j]) for n, j in by_pitch[p]] for p in pitches}
        weights = [sum(occurrence_weights[p]) ** (1.0 / temperature) for p in pitches]
        chosen = rng.choices(pitches, weights=weights)[0]
        return rng.choices(by_pitch[chosen], weights=occurrence_weights[chosen])[0]

    def _fit(self, pitch: int, allowed: Sequence[int], low: int, high: int) -> int:
        """Fold into the player's range (an octave of leeway) and snap into the key."""
        while pitch > min(127, high + 7):
            pitch -= 12
        while pitch < max(0, low - 7):
            pitch += 12
        return _snap(pitch, allowed)

    def _pitch_range(self) -> tuple[int, int]:
        pitches = [e.pitch for events in self._phrases for e in events]
        return min(pitches), max(pitches)

    @staticmethod
    def _grid_ticks(prompt: Sequence[Sequence[int]], ppq: int) -> int:
        """16ths or eighth-note triplets, whichever the prompt's onsets sit closer to."""
        onsets = [n[2] for n in prompt]
        if not onsets:
            return ppq // 4

        def misfit(grid: int) -> float:
            return sum(min(o % grid, grid - o % grid) / grid for o in onsets)

        return min((ppq // 4, ppq // 3), key=misfit)

    @staticmethod
    def _groove(
        prompt: Sequence[Sequence[int]], grid_ticks: int, slots: int, keep: float = 0.6
    ) -> dict[int, int]:
        """The player's feel: mean offset from the grid per grid position in the beat (swing, laid back).

        Answers sit on the grid plus `keep` of this offset: lightly quantized, the player's feel kept.
        """
        offsets: dict[int, list[int]] = {}
        for note in prompt:
            nearest = round(note[2] / grid_ticks)
            offsets.setdefault(nearest % slots, []).append(note[2] - nearest * grid_ticks)
        return {slot: round(keep * sum(v) / len(v)) for slot, v in offsets.items()}

    # --- scoring (for evaluation against the neural models) ----------------------------------------

    def nll(self, notes: Iterable[NoteTuple], ppq: int = 480) -> float:
        """Mean negative log-likelihood (nats per event) of the top-voice pitches of `notes`, not learned.

        Witten-Bell interpolation over orders max_order..1 with an add-one unigram floor over 128 pitches.
        """
        pitches = [e.pitch for e in _events(list(notes), ppq, max(1, ppq // 12))]
        if not pitches:
            return 0.0
        unigram = Counter(e.pitch for events in self._phrases for e in events)
        total = sum(unigram.values())
        score = 0.0
        for i, pitch in enumerate(pitches):
            probability = (unigram[pitch] + 1) / (total + 128)
            for order in range(1, min(self.max_order, i) + 1):
                found = self._index[order].get(tuple(pitches[i - order : i]))
                if not found:
                    break
                counts = Counter(self._phrases[n][j].pitch for n, j in found)
                seen, distinct = len(found), len(counts)
                probability = (counts[pitch] + distinct * probability) / (seen + distinct)
            score -= math.log(probability)
        return score / len(pitches)


def _as_tuples(notes: Iterable[Sequence[int]]) -> tuple[NoteTuple, ...]:
    """Normalise notes to (pitch, velocity, onset, duration) int tuples; ValueError if malformed."""
    result = []
    for note in notes:
        if len(note) != 4:
            raise ValueError(f"a note must be (pitch, velocity, onset_ticks, duration_ticks), got {note!r}")
        pitch, velocity, onset, duration = (int(x) for x in note)
        result.append((pitch, velocity, onset, duration))
    return tuple(result)


def _untangle(notes: list[NoteTuple]) -> list[NoteTuple]:
    """Sort by onset and shorten any note that would still sound when its pitch is struck again."""
    notes.sort(key=lambda n: (n[2], n[0]))
    next_onset: dict[int, int] = {}
    result: list[NoteTuple] = []
    for pitch, velocity, onset, duration in reversed(notes):
        following = next_onset.get(pitch)
        if following is not None and following == onset:
            continue  # the same pitch twice at one onset (a chord tone snapped onto another)
        if following is not None and onset + duration > following:
            duration = max(1, following - onset)
        next_onset[pitch] = onset
        result.append((pitch, velocity, onset, duration))
    result.reverse()
    return result
