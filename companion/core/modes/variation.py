"""Variation: when the player's phrase ends, answer on the next bar with a variation of that same phrase.

The request says what to do in ``settings["vae"]``: ``{"op": "vary", "seed": s, "bars": n}``; the phrase VAE
moves the phrase's latent by the ``distance`` control (a preset extra, live by CC or the UI: 0 nearly the
same, 1 a stranger) and decodes it. The seed is in the request (and its tag), so a variation can be played
again: regenerate without a new seed replays it.
"""

from __future__ import annotations

from typing import Any

from companion.core.events import Phrase
from companion.core.modes.base import ModeContext
from companion.core.modes.call_response import CallResponseMode

MAX_PHRASE_BARS = 16  # longer phrases are cut here (the model works a few bars at a time)


def phrase_bars(phrase: Phrase) -> int:
    """Whole bars from the phrase's bar line to the end of its last note (at least 1)."""
    last_end = max((n.end_ticks for n in phrase.notes), default=phrase.start_ticks)
    span = max(1, min(last_end, phrase.end_ticks) - phrase.start_ticks)
    return max(1, min(MAX_PHRASE_BARS, -(-span // phrase.bar_ticks)))


class VariationMode(CallResponseMode):
    """One variation per phrase, as long as the phrase, on the next bar; the player coming back in stops or ducks
    it, as in call and response (whose answer bookkeeping this shares)."""

    name = "variation"
    tag_prefix = "variation"

    def _plan(self, phrase: Phrase, ctx: ModeContext, seed: int) -> tuple[int, dict[str, Any]]:
        """(answer length in bars, the "vae" request settings); the morph mode overrides it."""
        bars = phrase_bars(phrase)
        return bars, {"op": "vary", "seed": seed, "bars": bars}

    def _span(self, phrase: Phrase, earliest_ticks: int, ctx: ModeContext, seed: int) -> tuple[int, int, dict]:
        bars, vae = self._plan(phrase, ctx, seed)
        start = ctx.next_bar(earliest_ticks)  # a variation answers on the bar: the model works in the lead time
        return start, start + bars * ctx.bar_ticks, {"vae": vae}

    def _tag(self, index: int, seed: int) -> str:
        return f"{self.tag_prefix}-{index}-seed{seed}"


MODE = VariationMode
