"""Morph: when a phrase ends, play ``morph_steps`` phrases from the one before it to this one, from the next bar.

Phrases can also be stored (a key or a CC, `StorePhrase`): the first stored phrase is A, and every phrase played
afterwards morphs from A instead of from the one before it; storing a second (B) plays the morph from A to B at
once (regenerate replays it). Storing again starts a new pair.

The request's phrase is the newer one (B); ``settings["vae"]`` holds ``{"op": "morph", "other": A's notes as
[pitch, velocity, onset_ticks, duration_ticks] from A's bar line, "steps": n, "bars": b, "seed": s}``. Each step
is ``b`` bars long (the longer of the two phrases), so the answer lasts ``n * b`` bars; the first step is A
again, the last is B.
"""

from __future__ import annotations

from typing import Any

from companion.core.events import Command, Log, Phrase
from companion.core.modes.base import ModeContext
from companion.core.modes.variation import VariationMode, phrase_bars

MAX_MORPH_BARS = 64  # steps x bars: a long morph is shortened (fewer steps) rather than running for minutes


class MorphMode(VariationMode):
    """Morphs between the last two phrases; the first phrase of a session only sets up the next morph."""

    name = "morph"
    tag_prefix = "morph"

    def __init__(self) -> None:
        super().__init__()
        self._previous: Phrase | None = None  # the phrase the next morph starts from
        self._from: Phrase | None = None  # A of the morph in play (for regenerate)
        self._stored: list[Phrase] = []  # the phrases the player kept: [A] or [A, B]

    def phrase_ended(self, phrase: Phrase, now_ticks: int, ctx: ModeContext) -> list[Command]:
        if not phrase.notes:
            return []
        previous, self._previous = self._previous, phrase
        start = self._stored[0] if self._stored else previous
        if start is None:
            return [Log("info", "morph: play one more phrase and the companion morphs from this one to it")]
        self._from = start
        return super().phrase_ended(phrase, now_ticks, ctx)

    def store_phrase(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        phrase = self._previous
        if phrase is None:
            return [Log("info", "morph: nothing to store yet; play a phrase first")]
        if len(self._stored) != 1:  # nothing stored, or a pair already: this starts a new pair
            self._stored = [phrase]
            return [Log("info", f"morph: stored A ({len(phrase.notes)} notes); each phrase now morphs from A, "
                                "and storing another as B plays A to B")]
        if phrase is self._stored[0]:
            return [Log("info", "morph: that phrase is already A; play another, then store it as B")]
        a, b = self._stored[0], phrase
        self._stored.append(b)
        self._from, self._last_phrase = a, b  # regenerate replays A to B
        index = ctx.next_answer_index()
        return (self.cancel(now_ticks) + [Log("info", f"morph: stored B ({len(b.notes)} notes); A to B from the "
                                                      "next bar")]
                + self._request(b, now_ticks, ctx, index, ctx.settings.seed + index))

    def _plan(self, phrase: Phrase, ctx: ModeContext, seed: int) -> tuple[int, dict[str, Any]]:
        a = self._from if self._from is not None else phrase
        bars = max(phrase_bars(a), phrase_bars(phrase))
        steps = max(2, min(ctx.settings.morph_steps, MAX_MORPH_BARS // bars))
        other = [[n.pitch, n.velocity, n.start_ticks - a.start_ticks, n.duration_ticks] for n in a.notes]
        return steps * bars, {"op": "morph", "other": other, "steps": steps, "bars": bars, "seed": seed}

    def snapshot(self, now_ticks: int) -> dict[str, Any]:
        return {**super().snapshot(now_ticks), "morph_ready": self._previous is not None,
                "stored": len(self._stored)}


MODE = MorphMode
