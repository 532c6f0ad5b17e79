"""The player's own style, fitted to the phrase being answered: the Continuator's idea, mixed into the Transformer.

``PromptStyle`` counts, over the notes of the prompt (and of earlier phrases of the session, with less weight),
which pitch follows the last two (Witten-Bell interpolated orders 2, 1, 0), which position in the bar the next
onset takes after the current one, and which duration a note at a position in the bar has. ``mix_block`` blends
one of these distributions into the model's within a token block (pitch, pos or dur): the model keeps its own
probability of choosing that kind of token at all, the style reshapes the choice inside it. Pure numpy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from models.continuation.markov_rhythm import full_bars, template_bar
from models.tokenizer import GridNote

DEFAULT_MIX = 0.5  # weight of the player's style inside a block; 0 turns it off


def _wb(counts: Counter[int] | None, lower: dict[int, float]) -> dict[int, float]:
    """Witten-Bell: counts of this context interpolated with the lower-order distribution."""
    if not counts:
        return lower
    seen, distinct = sum(counts.values()), len(counts)
    keys = set(lower) | set(counts)
    return {k: (counts.get(k, 0) + distinct * lower.get(k, 0.0)) / (seen + distinct) for k in keys}


def top_voice(notes: Sequence[GridNote]) -> list[GridNote]:
    """The highest note at each onset, in onset order."""
    top: dict[int, GridNote] = {}
    for n in notes:
        if n.onset not in top or n.pitch > top[n.onset].pitch:
            top[n.onset] = n
    return [top[o] for o in sorted(top)]


SINGLE_LINE_CHORDS = 0.1  # a phrase with chords at no more than this share of its onsets is a single line


def single_line(notes: Sequence[GridNote]) -> bool:
    """Whether the phrase is a melody line (a stray double note, a grace note landing on its main note's grid
    place, allowed): its answer is a line too. An empty phrase is not one (nothing to follow)."""
    onsets = Counter(n.onset for n in notes)
    return bool(onsets) and sum(c > 1 for c in onsets.values()) <= SINGLE_LINE_CHORDS * len(onsets)


class PromptStyle:
    """Counts of the player's pitches, onsets in the bar and durations; ``fit`` then query per step."""

    def __init__(self, bar_positions: int) -> None:
        self.bar_positions = bar_positions
        self.pitch: list[dict[tuple[int, ...], Counter[int]]] = [{}, {}, {}]  # order 0, 1, 2
        self.next_pos: dict[int, Counter[int]] = {}  # current pos in bar (-1: bar line) -> next onset's pos
        self.pos_any: Counter[int] = Counter()
        self.dur_at: dict[int, Counter[int]] = {}  # pos in bar -> duration (steps)
        self.dur_any: Counter[int] = Counter()

    def fit(self, notes: Sequence[GridNote], weight: int = 1) -> PromptStyle:
        """Learn a phrase (grid notes, onsets from its first bar line); a chord counts by its top note."""
        line = top_voice(notes)
        bp = self.bar_positions
        pitches = [n.pitch for n in line]
        for j, n in enumerate(line):
            for order in range(0, min(2, j) + 1):
                self.pitch[order].setdefault(tuple(pitches[j - order : j]), Counter())[n.pitch] += weight
            pos = n.onset % bp
            prev = line[j - 1].onset if j else None
            before = prev % bp if prev is not None and prev // bp == n.onset // bp else -1
            if j:  # where the phrase's first note falls in its bar is where the player began, not a habit
                self.next_pos.setdefault(before, Counter())[pos] += weight
            self.pos_any[pos] += weight
            self.dur_at.setdefault(pos, Counter())[n.duration] += weight
            self.dur_any[n.duration] += weight
        return self

    @property
    def empty(self) -> bool:
        return not self.pos_any

    def pitch_probs(self, context: Sequence[int]) -> dict[int, float]:
        """P(next top-voice pitch | the last two), interpolated down to the phrase's pitch frequencies."""
        total = sum(self.pitch[0].get((), Counter()).values())
        probs = {k: c / total for k, c in self.pitch[0].get((), Counter()).items()} if total else {}
        for order in (1, 2):
            if len(context) >= order:
                probs = _wb(self.pitch[order].get(tuple(context[-order:])), probs)
        return probs

    def pos_probs(self, current_pos: int) -> dict[int, float]:
        """P(next onset's position in the bar | the current one, -1 at the bar line)."""
        total = sum(self.pos_any.values())
        base = {k: c / total for k, c in self.pos_any.items()} if total else {}
        return _wb(self.next_pos.get(current_pos), base)

    def dur_probs(self, pos: int) -> dict[int, float]:
        """P(duration in steps | position in the bar)."""
        total = sum(self.dur_any.values())
        base = {k: c / total for k, c in self.dur_any.items()} if total else {}
        return _wb(self.dur_at.get(pos), base)


def dense(style: dict[int, float], index_of: dict[int, int], size: int) -> np.ndarray:
    """A style distribution (value -> probability) as an array over a token block (``index_of``: value -> index)."""
    out = np.zeros(size)
    for value, prob in style.items():
        i = index_of.get(value)
        if i is not None:
            out[i] = prob
    return out


def mix_block(logits: np.ndarray, allowed: np.ndarray, block: range, style: np.ndarray,
              weight: float) -> np.ndarray:
    """Logits over ``allowed`` (ascending token ids) with the style blended into the tokens of ``block``.

    Inside the block: p = (1 - weight) * p_model + weight * P_model(block) * p_style, where p_style is
    ``style`` (an array over the block's tokens) renormalised over the allowed ones. Outside it nothing
    changes. Returns log-probabilities for ``allowed``.
    """
    z = logits.astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    lo, hi = np.searchsorted(allowed, block.start), np.searchsorted(allowed, block.stop)
    mass = p[lo:hi].sum()
    s = style[allowed[lo:hi] - block.start] if hi > lo else style[:0]
    if weight <= 0 or mass <= 0 or s.sum() <= 0:
        return np.log(np.maximum(p, 1e-30))
    p[lo:hi] = (1 - weight) * p[lo:hi] + weight * mass * s / s.sum()
    return np.log(np.maximum(p, 1e-30))


DEFAULT_TEMPLATE_MIX = 0.3  # weight of the phrase's matching bar inside a block; 0 turns the templates off


class BarTemplates:
    """The phrase's bars as the shape of the answer's, as the Markov responder's rhythm plan takes them
    (``markov_rhythm``): answer bar k follows the phrase's k-th whole bar (cycling), its last bar the
    phrase's last. For each answer bar: onset place in the bar -> (top-voice pitch, duration), in grid steps."""

    def __init__(self, notes: Sequence[GridNote], bar_positions: int, answer_bar: int, bars: int) -> None:
        line = [(n.pitch, n.velocity, n.onset, n.duration) for n in top_voice(notes)]
        sources = full_bars(line, bar_positions)
        self.by_bar: dict[int, dict[int, tuple[int, int]]] = {}
        for k in range(bars if sources else 0):
            src = template_bar(sources, k, bars)
            self.by_bar[answer_bar + k] = {o - src * bar_positions: (p, d) for p, _, o, d in line
                                           if o // bar_positions == src}

    def bar(self, index: int) -> dict[int, tuple[int, int]]:
        """The template of the answer's bar ``index`` (the decoder's bar count): {} where there is none."""
        return self.by_bar.get(index, {})
