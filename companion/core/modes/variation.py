"""Variation: when the player's phrase ends, answer on the next bar with a variation of that same phrase.

The request says what to do in ``settings["vae"]``: ``{"op": "vary", "seed": s, "bars": n}``; the phrase VAE
moves the phrase's latent by the ``distance`` control (a preset extra, live by CC or the UI: 0 nearly the
same, 1 a stranger) and decodes it. The seed is in the request (and its tag), so a variation can be played
again: regenerate without a new seed replays it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from companion.core.events import Cancel, ChannelMessage, Command, Log, Phrase, RequestAnswer
from companion.core.modes.base import Mode, ModeContext

MAX_PHRASE_BARS = 16  # longer phrases are cut here (the model works a few bars at a time)


@dataclass(slots=True)
class _Answer:
    tag: str
    start_ticks: int
    end_ticks: int
    seed: int
    ducked: bool = False


def phrase_bars(phrase: Phrase) -> int:
    """Whole bars from the phrase's bar line to the end of its last note (at least 1)."""
    last_end = max((n.end_ticks for n in phrase.notes), default=phrase.start_ticks)
    span = max(1, min(last_end, phrase.end_ticks) - phrase.start_ticks)
    return max(1, min(MAX_PHRASE_BARS, -(-span // phrase.bar_ticks)))


class VariationMode(Mode):
    """One variation per phrase, as long as the phrase; the player coming back in stops or ducks it."""

    name = "variation"
    tag_prefix = "variation"

    def __init__(self) -> None:
        self._answers: list[_Answer] = []
        self._last_phrase: Phrase | None = None
        self._last_seed: int | None = None
        self.cancelled = 0
        self.ducked = 0

    # --- what to ask for (the morph mode overrides these) ---------------------------------------------------

    def _plan(self, phrase: Phrase, ctx: ModeContext, seed: int) -> tuple[int, dict[str, Any]]:
        """(answer length in bars, the "vae" request settings)."""
        bars = phrase_bars(phrase)
        return bars, {"op": "vary", "seed": seed, "bars": bars}

    def phrase_ended(self, phrase: Phrase, now_ticks: int, ctx: ModeContext) -> list[Command]:
        if not phrase.notes:
            return []
        self._last_phrase = phrase
        index = ctx.next_answer_index()
        return self._request(phrase, max(phrase.end_ticks, now_ticks), ctx, index, ctx.settings.seed + index)

    def _request(self, phrase: Phrase, after_ticks: int, ctx: ModeContext, index: int, seed: int) -> list[Command]:
        settings = ctx.settings
        bars, vae = self._plan(phrase, ctx, seed)
        # A variation answers on the bar: the model works in the lead time before it.
        start = ctx.next_bar(after_ticks + settings.lead_ticks)
        end = start + bars * ctx.bar_ticks
        commands: list[Command] = [Cancel(old.tag, min(start, old.end_ticks), "stop") for old in self._answers]
        tag = f"{self.tag_prefix}-{index}-seed{seed}"
        self._answers = [_Answer(tag, start, end, seed)]
        self._last_seed = seed
        key = ctx.key.as_pair() if (ctx.key is not None and settings.key_lock) else None
        request_settings = {**dataclasses.asdict(settings), "vae": vae}
        commands.append(RequestAnswer(phrase, start, end, tag, seed, key, request_settings))
        return commands

    # --- the player, time, and the user ---------------------------------------------------------------------

    def handle(self, message: ChannelMessage, now_ticks: int, ctx: ModeContext, player_note_on: bool) -> list[Command]:
        if not player_note_on:
            return []
        commands: list[Command] = []
        keep: list[_Answer] = []
        for answer in self._answers:
            if answer.end_ticks <= now_ticks:
                continue
            if ctx.settings.on_player_resume == "duck":
                if not answer.ducked:
                    answer.ducked = True
                    self.ducked += 1
                    commands.append(Cancel(answer.tag, now_ticks, "duck"))
                keep.append(answer)
            else:
                self.cancelled += 1
                commands.append(Cancel(answer.tag, now_ticks, "stop"))
        self._answers = keep
        return commands

    def tick(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        self._answers = [a for a in self._answers if a.end_ticks > now_ticks]
        return []

    def cancel(self, now_ticks: int, how: str = "stop") -> list[Command]:
        commands: list[Command] = [Cancel(a.tag, now_ticks, how) for a in self._answers if a.end_ticks > now_ticks]
        self.cancelled += len(commands)
        self._answers = []
        return commands

    def regenerate(self, now_ticks: int, ctx: ModeContext, new_seed: bool) -> list[Command]:
        """Play the last phrase's variation again (same seed: the same variation) or a fresh one."""
        if self._last_phrase is None:
            return [Log("info", f"nothing to {self.name} yet: play a phrase first")]
        commands = self.cancel(now_ticks)
        index = ctx.next_answer_index()
        seed = ctx.settings.seed + index if new_seed or self._last_seed is None else self._last_seed
        return commands + self._request(self._last_phrase, now_ticks, ctx, index, seed)

    def snapshot(self, now_ticks: int) -> dict[str, Any]:
        live = [a for a in self._answers if a.end_ticks > now_ticks]
        return {
            "answering": any(a.start_ticks <= now_ticks for a in live),
            "answer_due": any(a.start_ticks > now_ticks for a in live),
            "answers": [a.tag for a in live],
            "last_seed": self._last_seed,
            "cancelled": self.cancelled,
            "ducked": self.ducked,
        }


MODE = VariationMode
