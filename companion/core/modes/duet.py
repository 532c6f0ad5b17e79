"""Duet: the model keeps playing beside the player, re-reading the player's recent bars on every beat."""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Any

from companion.core.events import (
    Cancel,
    ChannelMessage,
    Command,
    Log,
    Note,
    NoteOff,
    NoteOn,
    Phrase,
    RequestAnswer,
)
from companion.core.modes.base import Mode, ModeContext
from companion.core.theory import estimate_key

_MAX_CONTEXT_NOTES = 256  # a rolling window, never the whole night
_KEY_MIN_NOTES = 4  # fewer notes than this say little about the key
_RECENT_SPANS = 16  # earlier spans whose notes the model may hear again (the generator keeps their notes)


@dataclass(slots=True)
class _Span:
    tag: str
    start_ticks: int
    end_ticks: int


class DuetMode(Mode):
    """Plays along with the player, one span (4 bars) at a time, each conditioned on the player's recent bars.

    On every beat line b the plan is brought up to date: notes before b + commit are committed; if the player
    played something new since the last request, the tentative rest of the plan (from b + commit on) is
    replaced by a new span conditioned on the new context; otherwise, when the plan runs out within the
    lookahead, the next span is requested, continuing the same context and the duet's own line. The duet
    rests once the player has been silent for `idle_bars` (after the span then playing, which continues the
    player's last phrase), and starts again with the player's next note.
    """

    name = "duet"

    def __init__(self, *, span_beats: int | None = None, span_bars: int = 4, commit_beats: int = 1,
                 context_bars: int = 4, idle_bars: int = 2, hear_itself: bool = False) -> None:
        if min(commit_beats, context_bars, idle_bars, span_bars) < 1 or (span_beats is not None and span_beats < 1):
            raise ValueError("span_beats, span_bars, commit_beats, context_bars and idle_bars must be at least 1")
        # A span is one continuous line of the model's. While the player plays, each beat's new notes replace
        # the tentative rest of it, so its length matters only once the player stops: then the duet plays on for
        # a span as one phrase (4 bars), not as one-bar pieces each decoded afresh (measured on held-out tunes:
        # pieces drift from the tune, `companion eval continuation`), and rests after it.
        self.span_beats = span_beats  # None: span_bars bars
        self.span_bars = span_bars
        # The window the model hears: 4 bars, a phrase of the player's (2 bars told the model too little of the
        # tune: further from its real continuation, models/checkpoints/continuation.md).
        self.commit_beats = commit_beats
        self.context_bars = context_bars
        self.idle_bars = idle_bars
        # Off by default: with its own line in the prompt beside the player's, the Transformer reads one dense
        # texture and each span gets busier than the last (measured: 2 -> 15 notes a beat within four bars).
        self.hear_itself = hear_itself
        self._notes: deque[Note] = deque(maxlen=_MAX_CONTEXT_NOTES)  # the player's notes, closed ones
        self._open: dict[tuple[int, int], tuple[int, int]] = {}  # (channel, pitch) -> (start_ticks, velocity)
        self._spans: list[_Span] = []  # requested, not yet over
        self._recent_tags: deque[str] = deque(maxlen=_RECENT_SPANS)
        self._pending_cancels: list[tuple[int, Cancel]] = []  # (issue at ticks, cancel): see _replace
        self._last_beat: int | None = None  # the beat line the plan was last brought up to date on
        self._commit_ticks: int | None = None  # notes from here on are tentative: the next plan may replace them
        self._last_player_ticks: int | None = None
        self._context_version = 0  # +1 per player note-on
        self._requested_version = -1
        self._last_seed: int | None = None
        self._now_ticks = 0
        self.spans_requested = 0
        self.replaced = 0

    # --- the player ----------------------------------------------------------------------------------

    def handle(
        self, message: ChannelMessage, now_ticks: int, ctx: ModeContext, player_note_on: bool
    ) -> list[Command]:
        self._now_ticks = max(self._now_ticks, now_ticks)
        if player_note_on and isinstance(message, NoteOn):
            key = (message.channel, message.note)
            if key in self._open:  # re-struck while sounding: the old note ends here
                self._close(key, now_ticks)
            self._open[key] = (now_ticks, message.velocity)
            self._context_version += 1
            self._last_player_ticks = now_ticks
        elif isinstance(message, NoteOff) or (isinstance(message, NoteOn) and message.velocity == 0):
            key = (message.channel, message.note)
            if key in self._open:
                self._close(key, now_ticks)
        return []

    def _close(self, key: tuple[int, int], now_ticks: int) -> None:
        start, velocity = self._open.pop(key)
        self._notes.append(Note(key[1], velocity, start, max(1, now_ticks - start), key[0]))

    def _context(self, now_ticks: int, ctx: ModeContext) -> Phrase:
        """The player's notes of the last `context_bars` bars, from the bar line before the window."""
        window_start = max(0, (now_ticks - self.context_bars * ctx.bar_ticks) // ctx.bar_ticks * ctx.bar_ticks)
        while self._notes and self._notes[0].start_ticks < window_start:
            self._notes.popleft()
        notes = [n for n in self._notes if n.start_ticks >= window_start]
        # A key still down has lasted at least this long; one that went down a moment ago would read as a
        # click (a tick long), and the model answers clicks with clicks: count it as an 8th at least.
        held = [Note(pitch, velocity, start, max(ctx.beat_ticks // 2, now_ticks - start), channel)
                for (channel, pitch), (start, velocity) in self._open.items() if start >= window_start]
        notes += held
        notes.sort(key=lambda n: (n.start_ticks, n.pitch))
        return Phrase(tuple(notes), window_start, now_ticks, ctx.bar_ticks)

    def span_ticks(self, beat_ticks: int, bar_ticks: int) -> int:
        """How long one requested span lasts."""
        return self.span_beats * beat_ticks if self.span_beats else self.span_bars * bar_ticks

    # --- time ------------------------------------------------------------------------------------------

    def tick(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        if now_ticks < self._now_ticks - ctx.bar_ticks:  # the clock jumped back (relocated): plan afresh
            self._spans, self._pending_cancels, self._last_beat = [], [], None
        self._now_ticks = max(self._now_ticks, now_ticks)
        commands: list[Command] = [c for at, c in self._pending_cancels if at <= now_ticks]
        self._pending_cancels = [(at, c) for at, c in self._pending_cancels if at > now_ticks]
        self._spans = [s for s in self._spans if s.end_ticks > now_ticks]
        beat = now_ticks // ctx.beat_ticks * ctx.beat_ticks
        if beat == self._last_beat:
            return commands
        first = self._last_beat is None
        self._last_beat = beat
        self._commit_ticks = beat + self.commit_beats * ctx.beat_ticks
        if first:  # plans are made on beat lines: wait for the next one
            return commands
        return commands + self._plan(beat, now_ticks, ctx)

    def _plan(self, beat_ticks: int, now_ticks: int, ctx: ModeContext) -> list[Command]:
        last = self._last_player_ticks
        if last is None or (not self._open and now_ticks - last > self.idle_bars * ctx.bar_ticks):
            return []  # the player is silent: let the plan run out and rest
        commit = beat_ticks + self.commit_beats * ctx.beat_ticks
        planned_until = max((s.end_ticks for s in self._spans), default=commit)
        if self._context_version != self._requested_version:
            self._replace(commit, ctx)
            return self._request(commit, now_ticks, ctx)
        if planned_until <= commit + ctx.beat_ticks:  # the plan runs out within the lookahead
            return self._request(max(planned_until, commit), now_ticks, ctx)
        return []

    def _replace(self, from_ticks: int, ctx: ModeContext) -> None:
        """Drop the tentative part of the plan, from `from_ticks` on.

        The scheduler ends a stopped tag's sounding notes when the cancel arrives, so the cancel is issued
        just before `from_ticks` (a 32nd early), not now: committed notes play out to the replacement.
        """
        margin = max(1, ctx.beat_ticks // 8)
        for span in self._spans:
            if span.end_ticks > from_ticks:
                self.replaced += 1
                self._pending_cancels.append((from_ticks - margin, Cancel(span.tag, from_ticks, "stop")))
                span.end_ticks = max(span.start_ticks, from_ticks)
        self._spans = [s for s in self._spans if s.end_ticks > s.start_ticks]

    def _request(self, start_ticks: int, now_ticks: int, ctx: ModeContext, seed: int | None = None) -> list[Command]:
        settings = ctx.settings
        span_ticks = self.span_ticks(ctx.beat_ticks, ctx.bar_ticks)
        end_ticks = start_ticks + span_ticks
        phrase = self._context(now_ticks, ctx)
        index = ctx.next_answer_index()
        seed = settings.seed + index if seed is None else seed
        self._last_seed = seed
        tag = f"duet-{index}"
        key = None
        if settings.key_lock:
            if ctx.key is not None:
                key = ctx.key.as_pair()
            elif len(phrase.notes) >= _KEY_MIN_NOTES:
                estimate = estimate_key((n.pitch, float(n.duration_ticks)) for n in phrase.notes)
                key = estimate.as_pair() if estimate is not None else None
        # The generator prompts with the player's notes (and, if it hears itself, what the earlier spans played).
        continues = list(self._recent_tags) if self.hear_itself else []
        request_settings = {**dataclasses.asdict(settings), "task": "duet", "continues": continues}
        self._spans.append(_Span(tag, start_ticks, end_ticks))
        self._recent_tags.append(tag)
        self._requested_version = self._context_version
        self.spans_requested += 1
        return [RequestAnswer(phrase, start_ticks, end_ticks, tag, seed, key, request_settings)]

    # --- stop, regenerate, UI ------------------------------------------------------------------------------

    def cancel(self, now_ticks: int, how: str = "stop") -> list[Command]:
        tags = [s.tag for s in self._spans if s.end_ticks > now_ticks]
        tags += [c.tag for _, c in self._pending_cancels if c.tag not in tags]
        commands: list[Command] = [Cancel(tag, now_ticks, how) for tag in tags]
        self._spans, self._pending_cancels = [], []
        self._open.clear()
        self._last_player_ticks = None  # wait for the player before playing again
        self._last_beat = None
        return commands

    def regenerate(self, now_ticks: int, ctx: ModeContext, new_seed: bool) -> list[Command]:
        if self._last_player_ticks is None:
            return [Log("info", "the duet starts when you play")]
        commit = ctx.next_beat(now_ticks) + self.commit_beats * ctx.beat_ticks
        self._replace(commit, ctx)
        seed = None if new_seed or self._last_seed is None else self._last_seed
        return self._request(commit, now_ticks, ctx, seed)

    def snapshot(self, now_ticks: int) -> dict[str, Any]:
        live = [s for s in self._spans if s.end_ticks > now_ticks]
        return {
            "answering": any(s.start_ticks <= now_ticks for s in live),
            "answer_due": any(s.start_ticks > now_ticks for s in live),
            "answers": [s.tag for s in live],
            "duet_spans": self.spans_requested,
            "duet_replaced": self.replaced,
            "tentative_from": self._commit_ticks if live else None,
        }


MODE = DuetMode
