"""Drum answers: call and response where the answer is a drum break on the accents of the player's call."""

from __future__ import annotations

from dataclasses import asdict

from companion.core.drums import player_bar
from companion.core.events import Phrase
from companion.core.modes.base import ModeContext
from companion.core.modes.call_response import CallResponseMode


class DrumAnswersMode(CallResponseMode):
    """As call and response (when, how long, stop or duck on the player's return), but the drum GAN answers: every
    bar of the answer is a fill following the accents of the call's last bar."""

    name = "drum_answers"

    def _span(self, phrase: Phrase, earliest_ticks: int, ctx: ModeContext, seed: int) -> tuple[int, int, dict]:
        start, end, _ = super()._span(phrase, earliest_ticks, ctx, seed)
        last_onset = max(n.start_ticks for n in phrase.notes)
        bar_start = last_onset - last_onset % ctx.bar_ticks
        call = player_bar(phrase.notes, bar_start, ctx.bar_ticks)
        return start, end, {"drums": {"answer": True, "bar_index": 0, "player": asdict(call), "before": None}}

    def _tag(self, index: int, seed: int) -> str:
        return f"drum-answer-{index}"


MODE = DrumAnswersMode
