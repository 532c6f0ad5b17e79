"""A Continuator-style variable-order Markov responder over the session's phrases (pure Python, stdlib only)."""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from collections.abc import Iterable, Sequence
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
    ioi_q: float  # quarters from this onset to the next one in the phrase (rests included)
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
    iois = [b - a for a, b in zip(onsets, onsets[1:])]
    typical_ioi = sorted(iois)[len(iois) // 2] if iois else ppq
    events: list[_Event] = []
    for i, group in enumerate(groups):
        top = max(group, key=lambda n: n[0])
        below = tuple(sorted({n[0] - top[0] for n in group if n[0] != top[0]}))
        # The last onset has no successor: it rests for its own length or a typical step, whichever is longer.
        ioi = iois[i] if i < len(iois) else max(top[3], typical_ioi)
        velocity = max(n[1] for n in group)
        events.append(_Event(top[0], below, velocity, ioi / ppq, max(top[3], 1) / ppq))
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
    the same pitch class, then to a step in the key's scale. To sound like an answer and not a copy, no
    more than `max_copy` consecutive events are taken from one place in memory: a longer literal run is
    broken by a shorter context. Memory holds the last `max_phrases` phrases.
    """

    def __init__(self, max_order: int = 4, max_phrases: int = 64, max_copy: int = 3) -> None:
        if max_order < 1:
            raise ValueError(f"max_order must be at least 1, got {max_order!r}")
        self.max_order = max_order
        self.max_phrases = max_phrases
        self.max_copy = max_copy
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
        """Add a phrase: (pitch, velocity, onset_ticks, duration_ticks) with onsets from the phrase start."""
        notes = _as_tuples(phrase)
        if not notes:
            return
        self._last_learned = notes
        events = _events(notes, ppq, chord_window_ticks=max(1, ppq // 12))[:1024]
        self._phrases.append(events)
        if len(self._phrases) > self.max_phrases:
            self._phrases.popleft()
            self._rebuild()  # phrase numbers shift; rebuilding is cheap at this size
        else:
            self._add_to_index(len(self._phrases) - 1, events)

    def _rebuild(self) -> None:
        self._index = [{} for _ in range(self.max_order + 1)]  # slot 0 unused
        self._by_pitch_class = {}
        for number, events in enumerate(self._phrases):
            self._add_to_index(number, events)

    def _add_to_index(self, number: int, events: list[_Event]) -> None:
        pitches = [e.pitch for e in events]
        for j in range(1, len(events)):
            self._by_pitch_class.setdefault(pitches[j - 1] % 12, []).append((number, j))
            for order in range(1, min(self.max_order, j) + 1):
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
    ) -> list[NoteTuple]:
        """An answer to `prompt_notes` lasting at most `length_ticks`, onsets from the answer start.

        The prompt is learned first unless it is the phrase learned last. Deterministic for a seed.
        Pitches outside `key_pcs` are snapped into it; no note sounds past `length_ticks`.
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
        context = [e.pitch for e in prompt_events][-self.max_order :]
        low, high = self._pitch_range()
        grid_ticks = self._grid_ticks(prompt, ppq)
        slots = max(1, ppq // grid_ticks)  # grid positions per quarter
        groove = self._groove(prompt, grid_ticks, slots)
        if not context:
            first = rng.choice(self._phrases)[0]
            context = [first.pitch]

        answer: list[NoteTuple] = []
        source: tuple[int, int] | None = None  # where the previous event came from, to limit copying
        run = 0
        position_ticks = 0  # on the grid; the player's groove is added per onset
        while True:
            onset = max(0, position_ticks + groove.get((position_ticks // grid_ticks) % slots, 0))
            if length_ticks - onset < max(1, ppq // 16):
                break
            event, pitch, picked = self._choose(context, source, run, rng, temperature, allowed, low, high)
            run = run + 1 if (source is not None and picked == (source[0], source[1] + 1)) else 0
            source = picked
            velocity = min(127, max(1, event.velocity + round(rng.gauss(0.0, 3.0 * temperature))))
            duration = min(max(1, round(event.duration_q * ppq)), length_ticks - onset)
            chord = {pitch} | {_snap(pitch + offset, allowed) for offset in event.below if 0 <= pitch + offset}
            for p in sorted(chord):
                if 0 <= p <= 127:
                    answer.append((p, velocity, onset, duration))
            context = (context + [pitch])[-self.max_order :]
            position_ticks += max(1, round(event.ioi_q * ppq / grid_ticks)) * grid_ticks
        return _untangle(answer)

    def _choose(
        self,
        context: list[int],
        source: tuple[int, int] | None,
        run: int,
        rng: random.Random,
        temperature: float,
        allowed: Sequence[int],
        low: int,
        high: int,
    ) -> tuple[_Event, int, tuple[int, int] | None]:
        """Pick the next event: (event, its pitch here, where in memory it came from)."""
        levels = []
        for order in range(min(self.max_order, len(context)), 0, -1):
            found = self._index[order].get(tuple(context[-order:]))
            if found:
                levels.append(found)
        # Now and then take a shorter context on purpose: more surprise, less recitation.
        if len(levels) > 1 and rng.random() < min(0.6, 0.2 * temperature):
            levels = levels[1:]
        banned = (source[0], source[1] + 1) if (source is not None and run >= self.max_copy - 1) else None
        for candidates in levels:
            usable = [c for c in candidates if c != banned]
            if usable:
                number, j = self._sample(usable, rng, temperature)
                event = self._phrases[number][j]
                return event, self._fit(event.pitch, allowed, low, high), (number, j)
        last = context[-1]
        transposable = [c for c in self._by_pitch_class.get(last % 12, []) if c != banned]
        if transposable:
            number, j = self._sample(transposable, rng, temperature)
            events = self._phrases[number]
            pitch = last + events[j].pitch - events[j - 1].pitch
            return events[j], self._fit(pitch, allowed, low, high), (number, j)
        # Nothing to go on: borrow a rhythm from memory and step through the scale toward the middle.
        events = rng.choice(self._phrases)
        event = rng.choice(events)
        scale = allowed or sorted({e.pitch % 12 for es in self._phrases for e in es})
        direction = 1 if last < (low + high) // 2 else -1
        if rng.random() < 0.3:
            direction = -direction
        step = rng.choice((1, 1, 2))
        pitch = last
        for _ in range(step):
            pitch += direction
            while scale and pitch % 12 not in scale:
                pitch += direction
        return event, self._fit(pitch, allowed, low, high), None

    def _sample(self, candidates: list[tuple[int, int]], rng: random.Random, temperature: float) -> tuple[int, int]:
        """Choose a continuation pitch with weight count^(1/T), then one of its occurrences uniformly."""
        by_pitch: dict[int, list[tuple[int, int]]] = {}
        for number, j in candidates:
            by_pitch.setdefault(self._phrases[number][j].pitch, []).append((number, j))
        pitches = list(by_pitch)
        weights = [len(by_pitch[p]) ** (1.0 / temperature) for p in pitches]
        chosen = rng.choices(pitches, weights=weights)[0]
        return rng.choice(by_pitch[chosen])

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
    def _groove(prompt: Sequence[Sequence[int]], grid_ticks: int, slots: int, keep: float = 0.6) -> dict[int, int]:
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
    """Normalise note-like sequences to (pitch, velocity, onset, duration) int tuples; ValueError if malformed."""
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
