"""How much of an answer may repeat the phrase it answers: the copy guard shared by every continuation model.

An answer that only repeats is not an answer. ``CopyGuard`` knows the phrase's 4-note runs (top-voice pitch
sequences, as ``companion eval continuation`` counts copies) and, given the answer's top voice so far, names the
pitches that would copy one more run once the answer's share of copied runs would pass ``share``: the models
hold those back (weight times ``HOLD_BACK``), so an answer may quote the tune, but not recite it. Stdlib only
(the Markov responder uses it too).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

DEFAULT_COPY_SHARE = 0.5  # the 50 % aim of issue 11 per answer: over the tunes, answers copy less on average
HOLD_BACK = 0.001  # what is left of a held-back pitch's weight (not 0: if nothing else fits, it may still come)
RUN = 4  # the length of the runs counted


class CopyGuard:
    """The phrase's 4-note runs, and which next pitches would copy one more of them past the allowed share."""

    def __init__(self, phrase_pitches: Iterable[Sequence[int]], share: float = DEFAULT_COPY_SHARE,
                 expected_notes: int | None = None) -> None:
        """``phrase_pitches``: top-voice pitch sequences (the phrase, and any earlier ones the answer should not
        recite either); ``share``: the share of the answer's runs that may be copies (1: no guard);
        ``expected_notes``: how many notes the answer will have, about (its copies are a budget over all its
        runs, spent where the model likes: a tune that opens its next phrase with its first notes may do so)."""
        self.share = share
        self.expected_runs = max(0, (expected_notes or 0) - RUN + 1)
        self.next_of: dict[tuple[int, ...], set[int]] = {}
        for line in phrase_pitches:
            for i in range(len(line) - RUN + 1):
                self.next_of.setdefault(tuple(line[i : i + RUN - 1]), set()).add(line[i + RUN - 1])

    def copies(self, line: Sequence[int], pitch: int) -> bool:
        """Whether ``pitch`` after ``line`` ends a run the phrase has."""
        return len(line) >= RUN - 1 and pitch in self.next_of.get(tuple(line[len(line) - RUN + 1 :]), ())

    def copied(self, line: Sequence[int]) -> int:
        """How many of ``line``'s runs are the phrase's."""
        return sum(1 for i in range(RUN - 1, len(line)) if self.copies(line[:i], line[i]))

    def held_back(self, answer: Sequence[int]) -> set[int] | frozenset[int]:
        """The pitches to hold back after the answer's top voice ``answer``: those that would copy a run, when
        one more copy would put the answer's copied runs above ``share`` of its runs (of the runs expected, while
        fewer have been played); else none."""
        if self.share >= 1.0 or len(answer) < RUN - 1:
            return frozenset()
        nxt = self.next_of.get(tuple(answer[len(answer) - RUN + 1 :]))
        if not nxt:
            return frozenset()
        runs = max(len(answer) - RUN + 2, self.expected_runs)  # with the next pitch's run
        if self.copied(answer) + 1 <= self.share * runs:
            return frozenset()
        return nxt
