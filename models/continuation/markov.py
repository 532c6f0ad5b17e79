"""A Continuator-style variable-order Markov responder over the session's phrases (stdlib only)."""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from models.continuation.copies import DEFAULT_COPY_SHARE, HOLD_BACK, CopyGuard
from models.continuation.markov_rhythm import Slot, full_bars, template_plan, walk_plan

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
    context maps to the events that followed it, in every phrase of the session so far (the last
    `max_phrases`). An answer is planned rhythm first (``models.continuation.markov_rhythm``: the phrase's own bars, as
    the Continuator can take the rhythm of its input), then a pitch for every onset from the orders
    interpolated down to the pitches' frequencies (Witten-Bell), where an event heard at the same place
    in the bar counts more, mixed with what the template bar played there. To sound like an answer and
    not a copy, at most about `copy_share` of the answer's 4-note runs repeat one in memory, and none
    repeats more than `max_copy` notes in a row.
    """

    def __init__(self, max_order: int = 3, max_phrases: int = 64, max_copy: int = 6,
                 copy_share: float = DEFAULT_COPY_SHARE,
                 template_mix: float = 0.6, template_bars: bool = True) -> None:
        if max_order < 1:
            raise ValueError(f"max_order must be at least 1, got {max_order!r}")
        if max_copy < 4:
            raise ValueError(f"max_copy must be at least 4 (the copied runs counted are 4 notes), got {max_copy!r}")
        if not 0.0 <= copy_share <= 1.0 or not 0.0 <= template_mix <= 1.0:
            raise ValueError(f"copy_share and template_mix must be within 0..1, got {copy_share!r}, "
                             f"{template_mix!r}")
        self.max_order = max_order
        self.max_phrases = max_phrases
        self.max_copy = max_copy
        self.copy_share = copy_share
        self.template_mix = template_mix  # weight of the template bar's own pitch at each onset
        self.template_bars = template_bars  # False: always walk the grid (no bar templates)
        self._index_order = max(max_order, max_copy)
        self._phrases: deque[list[_Event]] = deque()
        self._index: list[dict[tuple[int, ...], list[tuple[int, int]]]] = []
        self._all: list[tuple[int, int]] = []  # every remembered event: the order-0 "context"
        self._by_pitch: dict[int, list[tuple[int, int]]] = {}
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
        self._all, self._by_pitch = [], {}
        for number, events in enumerate(self._phrases):
            self._add_to_index(number, events)

    def _add_to_index(self, number: int, events: list[_Event]) -> None:
        pitches = [e.pitch for e in events]
        for j in range(len(events)):
            self._all.append((number, j))
            self._by_pitch.setdefault(pitches[j], []).append((number, j))
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
        rhythm comes first (``markov_rhythm``: the prompt's bars as templates, else a walk on its grid,
        bars of `bar_ticks`, default 4 quarters), then a pitch for every onset. Pitches outside `key_pcs` are
        snapped into it; no note sounds past `length_ticks`.
        """
        prompt = _as_tuples(prompt_notes)
        if prompt and prompt != self._last_learned:
            self.learn(prompt, ppq)
        if not self._phrases or length_ticks <= 0:
            return []
        rng = random.Random(seed)
        temperature = min(max(temperature, 0.05), 5.0)
        allowed = sorted({pc % 12 for pc in key_pcs}) if key_pcs else []
        bar_ticks = max(1, bar_ticks or 4 * ppq)
        source = prompt or self._last_learned or ()  # no prompt: the rhythm of the phrase heard last
        line = [(e.pitch, e.velocity, round(e.onset_q * ppq), round(e.duration_q * ppq))
                for e in _events(source, ppq, max(1, ppq // 12))]
        too_short = max(1, ppq // 16)  # no note starts this close to the answer's end
        bars = full_bars(line, bar_ticks) if self.template_bars else []
        if bars:
            slots = template_plan(line, bars, length_ticks, bar_ticks, too_short)
        else:
            slots = walk_plan(line, length_ticks, bar_ticks, ppq, rng, too_short)
        context = [n[0] for n in line][-self._index_order :] if prompt else [rng.choice(self._phrases)[0].pitch]
        low, high = self._pitch_range()
        guard = CopyGuard([[e.pitch for e in events] for events in self._phrases], self.copy_share, len(slots))
        answer: list[NoteTuple] = []
        top: list[int] = []  # the answer's own top voice, for the copy guard
        for slot in slots:
            event, pitch = self._choose(context, guard.held_back(top), slot, ppq, bar_ticks, rng, temperature,
                                        allowed, low, high)
            top.append(pitch)
            velocity = min(127, max(1, slot.velocity + round(rng.gauss(0.0, 3.0 * temperature))))
            below = event.below if event is not None else ()
            chord = {pitch} | {_snap(pitch + offset, allowed) for offset in below if 0 <= pitch + offset}
            for p in sorted(chord):
                if 0 <= p <= 127:
                    answer.append((p, velocity, slot.onset_ticks, slot.duration_ticks))
            context = (context + [pitch])[-self._index_order :]
        return _untangle(answer)

    def _choose(self, context: list[int], held_back: set[int] | frozenset[int], slot: Slot, ppq: int,
                bar_ticks: int, rng: random.Random, temperature: float, allowed: Sequence[int], low: int,
                high: int) -> tuple[_Event | None, int]:
        """The next pitch (and the remembered event it comes from, for its chord tones) at `slot`.

        P(pitch) interpolates orders `max_order`..1 of the context down to the pitches' frequencies
        (Witten-Bell: an order keeps the share its contexts' counts earn against the number of different
        continuations), each occurrence counted four times when it fell at the slot's place in the bar. The
        pitch the template bar had at this place gets `template_mix` of the mass (the tune's shape, varied by
        the model). Then the temperature; the copy guard's `held_back` pitches (one more copied 4-note run past
        `copy_share`) keep little weight, and one that would copy more than `max_copy` notes in a row is refused.
        """
        weight = self._place_weights(slot.bar_place_ticks, ppq, bar_ticks)
        probs: dict[int, float] = {}
        left = 1.0
        for order in range(min(self.max_order, len(context)), -1, -1):
            found = self._index[order].get(tuple(context[len(context) - order :])) if order else self._all
            if not found:
                continue
            counts: dict[int, float] = {}
            for n, j in found:
                pitch = self._phrases[n][j].pitch
                counts[pitch] = counts.get(pitch, 0.0) + weight(n, j)
            total = sum(counts.values())
            share = left * (len(found) / (len(found) + len(counts)) if order else 1.0)  # raw counts: Witten-Bell
            for pitch, c in counts.items():
                probs[pitch] = probs.get(pitch, 0.0) + share * c / total
            left -= share
        if slot.template_pitch is not None and self.template_mix > 0:
            probs = {p: (1 - self.template_mix) * q for p, q in probs.items()}
            probs[slot.template_pitch] = probs.get(slot.template_pitch, 0.0) + self.template_mix
        banned = self._copying_pitches(context)
        weights: dict[int, float] = {}
        for pitch, q in probs.items():
            fitted = self._fit(pitch, allowed, low, high)
            if fitted in banned:
                continue
            w = q ** (1.0 / temperature)
            if fitted in held_back:
                w *= HOLD_BACK
            weights[fitted] = weights.get(fitted, 0.0) + w
        weights = {p: w for p, w in weights.items() if w > 0}
        if not weights:  # everything remembered would copy too long a run: a step through the scale
            return None, self._step(context[-1], allowed, low, high, rng)
        pitches = sorted(weights)
        pitch = rng.choices(pitches, weights=[weights[p] for p in pitches])[0]
        return self._occurrence(pitch, weight, rng), pitch

    def _place_weights(self, place_ticks: int, ppq: int, bar_ticks: int) -> Callable[[int, int], float]:
        """Weight of a remembered event at (phrase, index): 4 if it fell at `place_ticks` in its bar, else 1."""
        tolerance = max(1, ppq // 24)

        def weight(n: int, j: int) -> float:
            where = round(self._phrases[n][j].onset_q * ppq) % bar_ticks
            return 4.0 if abs(where - place_ticks) <= tolerance else 1.0

        return weight

    def _occurrence(self, pitch: int, weight: Callable[[int, int], float], rng: random.Random) -> _Event | None:
        """A remembered event of `pitch` (one at the same place in the bar preferred), or None."""
        found = self._by_pitch.get(pitch)
        if not found:
            return None
        n, j = rng.choices(found, weights=[weight(n, j) for n, j in found])[0]
        return self._phrases[n][j]

    def _step(self, last: int, allowed: Sequence[int], low: int, high: int, rng: random.Random) -> int:
        """One or two steps through the scale from `last`, toward the middle of the player's range."""
        scale = allowed or sorted({e.pitch % 12 for es in self._phrases for e in es})
        direction = 1 if last < (low + high) // 2 else -1
        pitch = last
        for _ in range(rng.choice((1, 1, 2))):
            pitch += direction
            while scale and pitch % 12 not in scale:
                pitch += direction
        return self._fit(pitch, allowed, low, high)

    def _copying_pitches(self, context: list[int]) -> set[int]:
        """Pitches that would make the last `max_copy` + 1 pitches a literal copy of something in memory."""
        if len(context) < self.max_copy:
            return set()
        found = self._index[self.max_copy].get(tuple(context[-self.max_copy :]), [])
        return {self._phrases[n][j].pitch for n, j in found}

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
