"""Call and response: when the player's phrase ends, ask for an answer on the next beat or bar."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from companion.core.events import Cancel, ChannelMessage, Command, Log, Phrase, RequestAnswer
from companion.core.modes.base import Mode, ModeContext


@dataclass(slots=True)
class _Answer:
    tag: str
    start_ticks: int
    end_ticks: int
    seed: int
    ducked: bool = False


class CallResponseMode(Mode):
    """One answer per phrase; the player coming back in stops or ducks the answer that is due or playing."""

    name = "call_response"

    def __init__(self) -> None:
        self._answers: list[_Answer] = []
        self._last_phrase: Phrase | None = None
        self._last_seed: int | None = None
        self.cancelled = 0
        self.ducked = 0

    def phrase_ended(self, phrase: Phrase, now_ticks: int, ctx: ModeContext) -> list[Command]:
        if not phrase.notes:
            return []
        self._last_phrase = phrase
        settings = ctx.settings
        index = ctx.next_answer_index()
        return self._request(phrase, max(phrase.end_ticks, now_ticks), ctx, index, settings.seed + index)

    # --- what to ask for (variation and morph override these) ------------------------------------------------

    def _span(self, phrase: Phrase, earliest_ticks: int, ctx: ModeContext, seed: int) -> tuple[int, int, dict]:
        """(start, end, extra request settings) of the answer to `phrase`."""
        settings = ctx.settings
        start = ctx.next_bar(earliest_ticks) if settings.response_start == "bar" else ctx.next_beat(earliest_ticks)
        return start, start + settings.response_bars * ctx.bar_ticks, {}

    def _tag(self, index: int, seed: int) -> str:
        return f"answer-{index}"

    def _request(
        self, phrase: Phrase, after_ticks: int, ctx: ModeContext, index: int, seed: int
    ) -> list[Command]:
        settings = ctx.settings
        # The lead gives the generator time to work before the first note is due.
        start, end, extra = self._span(phrase, after_ticks + settings.lead_ticks, ctx, seed)
        commands: list[Command] = []
        # An older answer still sounding (it was ducked) stops where the new one starts.
        for old in self._answers:
            commands.append(Cancel(old.tag, min(start, old.end_ticks), "stop"))
        tag = self._tag(index, seed)
        self._answers = [_Answer(tag, start, end, seed)]
        self._last_seed = seed
        key = ctx.key.as_pair() if (ctx.key is not None and settings.key_lock) else None
        request_settings = {**dataclasses.asdict(settings), **extra}
        commands.append(RequestAnswer(phrase, start, end, tag, seed, key, request_settings))
        return commands

    def handle(
        self, message: ChannelMessage, now_ticks: int, ctx: ModeContext, player_note_on: bool
    ) -> list[Command]:
        if not player_note_on:
            return []
        commands: list[Command] = []
        how = ctx.settings.on_player_resume
        keep: list[_Answer] = []
        for answer in self._answers:
            if answer.end_ticks <= now_ticks:
                continue
            if how == "duck":
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
        commands: list[Command] = [
            Cancel(a.tag, now_ticks, how) for a in self._answers if a.end_ticks > now_ticks
        ]
        self.cancelled += len(commands)
        self._answers = []
        return commands

    def regenerate(self, now_ticks: int, ctx: ModeContext, new_seed: bool) -> list[Command]:
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


MODE = CallResponseMode
