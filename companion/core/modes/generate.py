"""Generate: the model plays on its own from a style, tempo and length (background music), span after span."""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from companion.core.events import Cancel, Command, Log, Phrase, RequestAnswer
from companion.core.modes.base import Mode, ModeContext

_CONTEXT_BARS = 4  # each span continues what the last bars of the piece played
_RECENT_SPANS = 8


@dataclass(slots=True)
class _Span:
    tag: str
    start_ticks: int
    end_ticks: int


class GenerateMode(Mode):
    """Plays a piece of `length_bars` bars (0 in the settings: until stopped) in spans of `span_bars`, each
    continuing the last.

    The piece starts on the bar line after a beat of lead. Span k + 1 is requested as soon as span k starts
    to play: the generator worker takes requests in order and streams each one only a lookahead ahead of the
    playhead, so the next span is decoded while the end of this one plays. A stop (panic, transport stop)
    ends the piece; Regenerate or the transport's Start starts a new one; a settings change restarts it from the
    next bar with the new settings. `style` and `length_bars` come from the constructor, else `length_bars` from
    the engine settings ([engine] length_bars of the preset); a style left unset is the preset's (the runtime adds it to
    the request). A piece of a length ends on the bar line that many bars after its first: its last span is
    cut there (the generators clip their notes to a span's end, the scheduler closes them at their ends).
    """

    name = "generate"

    def __init__(self, *, style: str | None = None, length_bars: int | None = None, span_bars: int = 2,
                 lead_beats: int = 1) -> None:
        if span_bars < 1 or lead_beats < 0 or (length_bars is not None and length_bars < 1):
            raise ValueError("span_bars and length_bars must be at least 1, lead_beats at least 0")
        self.style = style
        self.length_bars = length_bars
        self.span_bars = span_bars
        self.lead_beats = lead_beats
        self._origin_ticks: int | None = None  # the piece's first bar line
        self._end_ticks: int | None = None  # the piece's end (None: endless)
        self._spans: list[_Span] = []  # requested, not yet over
        self._recent_tags: deque[str] = deque(maxlen=_RECENT_SPANS)
        self._next_start_ticks = 0
        self._key: tuple[int, str] | None = None
        self._seed_offset = 0  # Regenerate with a new seed moves the whole piece to other seeds
        self._running = False
        self._settings: object | None = None  # the settings of the latest tick
        self._stopped_settings: object | None = None  # the settings in force when a stop ended the piece
        self._started_once = False
        self._resume = False  # the transport started: play again from the next bar line of the new position
        self._span_index = 0  # spans of this piece so far (seeds follow it)
        self._bar_ticks = 1
        self._now_ticks = 0
        self.spans_requested = 0
        self.pieces = 0

    # --- time ------------------------------------------------------------------------------------------

    def tick(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        self._now_ticks = max(self._now_ticks, now_ticks)
        self._settings = ctx.settings
        self._spans = [s for s in self._spans if s.end_ticks > now_ticks]
        if not self._running:
            restart = self._resume or (self._stopped_settings is not None and ctx.settings != self._stopped_settings)
            if self._started_once and not restart:
                return []
            return self._start(now_ticks, ctx)
        if self._end_ticks is not None and self._next_start_ticks >= self._end_ticks:
            if not self._spans:
                self._running = False
                self._stopped_settings = ctx.settings
                return [Log("info", f"generate: the piece of {self._length(ctx)} bars is over")]
            return []
        if self._spans and now_ticks < self._spans[-1].start_ticks:
            return []  # the latest span has not started yet: one request waits in the queue at most
        return self._request(now_ticks, ctx)

    def _length(self, ctx: ModeContext) -> int | None:
        return self.length_bars if self.length_bars is not None else (ctx.settings.length_bars or None)

    def _start(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        self._started_once = True
        self._resume = False
        self._running = True
        self._stopped_settings = None
        self.pieces += 1
        self._span_index = 0
        self._bar_ticks = ctx.bar_ticks
        self._origin_ticks = ctx.next_bar(now_ticks + self.lead_beats * ctx.beat_ticks)
        length = self._length(ctx)
        self._end_ticks = None if length is None else self._origin_ticks + length * ctx.bar_ticks
        self._next_start_ticks = self._origin_ticks
        self._recent_tags.clear()
        settings = ctx.settings
        if ctx.key is not None:  # the player's key, if the session heard one
            self._key = ctx.key.as_pair()
        else:  # else a key of the piece's own, from the seed
            rng = random.Random(settings.seed + self._seed_offset)
            self._key = (rng.randrange(12), rng.choice(("major", "minor")))
        return self._request(now_ticks, ctx)

    def _request(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        settings = ctx.settings
        start = self._next_start_ticks
        end = start + self.span_bars * ctx.bar_ticks
        if self._end_ticks is not None:
            end = min(end, self._end_ticks)
        window_start = max(self._origin_ticks or 0, start - _CONTEXT_BARS * ctx.bar_ticks)
        index = ctx.next_answer_index()
        tag = f"generate-{index}"
        extra: dict[str, Any] = {"task": "generate", "continues": list(self._recent_tags)}
        if self.style is not None:
            extra["style"] = self.style
        request_settings = {**dataclasses.asdict(settings), **extra}
        seed = settings.seed + self._seed_offset + self._span_index
        phrase = Phrase((), window_start, start, ctx.bar_ticks)
        key = self._key if settings.key_lock else None
        self._spans.append(_Span(tag, start, end))
        self._recent_tags.append(tag)
        self._next_start_ticks = end
        self._span_index += 1
        self.spans_requested += 1
        return [RequestAnswer(phrase, start, end, tag, seed, key, request_settings)]

    # --- stop, regenerate, UI ------------------------------------------------------------------------------

    def cancel(self, now_ticks: int, how: str = "stop") -> list[Command]:
        commands: list[Command] = [Cancel(s.tag, now_ticks, how) for s in self._spans if s.end_ticks > now_ticks]
        self._spans = []
        if self._running:
            self._running = False
            # The engine cancels before it changes settings: a tick with other settings restarts the piece.
            self._stopped_settings = self._settings
        return commands

    def transport_start(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        """Start in the DAW (or the Link session) plays the piece again, from the bar after a beat of lead at the
        new position; what was planned on the old position is cancelled (it would wait there, silent, for the
        playhead to come back). A piece stopped by the transport, a panic or its end starts anew the same way."""
        commands = self.cancel(now_ticks) if self._started_once else []
        self._resume = True
        return commands

    def after_panic(self) -> list[Command]:
        if not self._started_once:
            return []
        return [Log("info", "generate: stopped by the panic; press n (regenerate) to start a new piece")]

    def regenerate(self, now_ticks: int, ctx: ModeContext, new_seed: bool) -> list[Command]:
        commands = self.cancel(now_ticks)
        if new_seed:
            self._seed_offset += 1000
        return commands + self._start(now_ticks, ctx)

    def snapshot(self, now_ticks: int) -> dict[str, Any]:
        live = [s for s in self._spans if s.end_ticks > now_ticks]
        bar = None
        if self._origin_ticks is not None and self._running and now_ticks >= self._origin_ticks:
            bar = (now_ticks - self._origin_ticks) // self._bar_ticks + 1
        return {
            "answering": any(s.start_ticks <= now_ticks for s in live),
            "answer_due": any(s.start_ticks > now_ticks for s in live),
            "answers": [s.tag for s in live],
            "generating": self._running,
            "generate_spans": self.spans_requested,
            "generate_bar": bar,
        }


MODE = GenerateMode
