"""Drums: a drummer that plays beside the player, a bar at a time, following how dense and loud they play.

Bar k is requested when bar k - 1 starts (a bar ahead: the drum GAN runs on the generator worker, off every
timing thread), with the player's last complete bar and the one before it as its conditions. The drum voice
(`companion/worker/drum_voice.py`) turns them into the bar: the player's taps and loudness, a fill on the last bar of
each phrase ([engine] max_bars bars, at the preset's fill rate), a break on the first bar after the player
stops, and a fill into a new section when the player cues one with the trigger ([engine] trigger_cc >= 64, a foot
switch, or trigger_note): the next bar that can still be changed (one starting a beat or more after the cue,
re-planned if it was already asked for) is the section's last and always a fill, and the phrases count again from
the bar after it, so the phrase-end fills fall where the new section's phrases end. A stop (transport stop,
panic, mode or settings change) ends every bar in flight; the drummer comes back in when the player plays again,
on Regenerate, or with new settings.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from companion.core.drums import is_phrase_end, player_bar
from companion.core.events import Cancel, ChannelMessage, Command, ControlChange, Note, NoteOn, Phrase, RequestAnswer
from companion.core.modes.base import Mode, ModeContext

_ONSET_MEMORY = 512  # the player's recent note-ons kept (a few bars of fast playing)
DEFAULT_PHRASE_BARS = 4  # the phrase length when [engine] max_bars is none


@dataclass(slots=True)
class _Bar:
    tag: str
    index: int
    start_ticks: int
    end_ticks: int


def player_bars(onsets: deque[Note], bar_start_ticks: int, bar_ticks: int) -> dict[str, Any]:
    """What the drum voice reads for the bar at `bar_start_ticks`, asked for a bar ahead: the player's last
    complete bar by then (two bars before it) and the one before that."""
    last = player_bar(onsets, bar_start_ticks - 2 * bar_ticks, bar_ticks)
    before = player_bar(onsets, bar_start_ticks - 3 * bar_ticks, bar_ticks)
    return {"player": asdict(last), "before": asdict(before)}


class DrumsMode(Mode):
    """Plays until stopped, one requested bar ahead of the one playing."""

    name = "drums"

    def __init__(self) -> None:
        self._onsets: deque[Note] = deque(maxlen=_ONSET_MEMORY)
        self._bars: list[_Bar] = []  # requested, not over
        self._origin_ticks: int | None = None
        self._next_index = 0
        self._running = False
        self._want_start = True  # start on the next tick (first tick, player back, regenerate)
        self._stopped_settings: object | None = None
        self._seed_offset = 0
        self._last_settings: object | None = None  # the settings of the latest tick
        self._now_ticks = 0
        self._phrase_origin = 0  # the bar index the current section's phrases count from
        self._section_end: int | None = None  # the bar index cued to end the section (always a fill)
        self.bars_requested = 0
        self.phrase_ends: deque[int] = deque(maxlen=64)  # start ticks of the bars asked for as a phrase's last
        self.section_ends: deque[int] = deque(maxlen=64)  # start ticks of the bars asked for as a section's last

    def handle(self, message: ChannelMessage, now_ticks: int, ctx: ModeContext, player_note_on: bool) -> list[Command]:
        if player_note_on and isinstance(message, NoteOn):
            self._onsets.append(Note(message.note, message.velocity, now_ticks, 1, message.channel))
            if not self._running:
                self._want_start = True
        if self._running and _is_cue(message, ctx):
            return self._cue(now_ticks, ctx)
        return []

    def _cue(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        """The player cued a new section: the next bar that starts a beat or more from now ends this one."""
        assert self._origin_ticks is not None
        index = -(-(now_ticks + ctx.beat_ticks - self._origin_ticks) // ctx.bar_ticks)
        replan = [b for b in self._bars if b.index >= index]
        if replan:  # already asked for as an ordinary bar: ask again
            index = min(b.index for b in replan)
            self._bars = [b for b in self._bars if b.index < index]
            self._next_index = index
        index = max(index, self._next_index)
        self._section_end = index
        self._phrase_origin = index + 1
        commands: list[Command] = [Cancel(b.tag, b.start_ticks, "stop") for b in replan]
        while self._next_index <= index:
            commands.append(self._request(ctx))
        return commands

    def tick(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        commands: list[Command] = []
        if now_ticks + ctx.beat_ticks < self._now_ticks:  # the clock went back (the DAW's Start, a song position)
            commands += self.cancel(now_ticks)
            self._want_start = True
        self._now_ticks = now_ticks
        self._bars = [b for b in self._bars if b.end_ticks > now_ticks]
        self._last_settings = ctx.settings
        if not self._running:
            changed = self._stopped_settings is not None and ctx.settings != self._stopped_settings
            if not (self._want_start or changed):
                return commands
            self._start(now_ticks, ctx)
        if self._next_start(ctx) < now_ticks:  # the clock jumped (song position): go on from the next bar line
            assert self._origin_ticks is not None
            self._next_index = -(-(now_ticks - self._origin_ticks) // ctx.bar_ticks)
        # bar k is asked for once bar k - 1 has started (the first bar at once)
        while self._next_start(ctx) - ctx.bar_ticks <= now_ticks or not self._bars:
            commands.append(self._request(ctx))
        return commands

    def _start(self, now_ticks: int, ctx: ModeContext) -> None:
        self._running = True
        self._want_start = False
        self._stopped_settings = None
        # a bar of lead: the model may still be loading when the drummer is first asked to play
        self._origin_ticks = ctx.next_bar(now_ticks + ctx.beat_ticks)
        self._next_index = 0
        self._phrase_origin = 0
        self._section_end = None

    def _next_start(self, ctx: ModeContext) -> int:
        assert self._origin_ticks is not None
        return self._origin_ticks + self._next_index * ctx.bar_ticks

    def _request(self, ctx: ModeContext) -> RequestAnswer:
        settings = ctx.settings
        start = self._next_start(ctx)
        index = self._next_index
        tag = f"drums-{ctx.next_answer_index()}"
        section_end = index == self._section_end
        phrase_end = section_end or (index >= self._phrase_origin and is_phrase_end(
            index - self._phrase_origin, settings.max_bars or DEFAULT_PHRASE_BARS))
        if phrase_end:
            self.phrase_ends.append(start)
        if section_end:
            self.section_ends.append(start)
        drums = {"bar_index": index, "phrase_end": phrase_end, "section_end": section_end,
                 **player_bars(self._onsets, start, ctx.bar_ticks)}
        request_settings = {**asdict(settings), "drums": drums}
        self._bars.append(_Bar(tag, index, start, start + ctx.bar_ticks))
        self._next_index += 1
        self.bars_requested += 1
        seed = settings.seed + self._seed_offset + index
        return RequestAnswer(Phrase((), start, start, ctx.bar_ticks), start, start + ctx.bar_ticks, tag, seed,
                             None, request_settings)

    def cancel(self, now_ticks: int, how: str = "stop") -> list[Command]:
        commands: list[Command] = [Cancel(b.tag, now_ticks, how) for b in self._bars if b.end_ticks > now_ticks]
        self._bars = []
        if self._running:
            self._running = False
            self._stopped_settings = self._last_settings
        return commands

    def regenerate(self, now_ticks: int, ctx: ModeContext, new_seed: bool) -> list[Command]:
        commands = self.cancel(now_ticks)
        if new_seed:
            self._seed_offset += 1000
        self._want_start = True
        return commands + self.tick(now_ticks, ctx)

    def snapshot(self, now_ticks: int) -> dict[str, Any]:
        live = [b for b in self._bars if b.end_ticks > now_ticks]
        playing = [b for b in live if b.start_ticks <= now_ticks]
        return {
            "answering": bool(playing),
            "answer_due": any(b.start_ticks > now_ticks for b in live),
            "answers": [b.tag for b in live],
            "drums_playing": self._running,
            "drum_bar": playing[0].index + 1 if playing else None,
            "drum_bars": self.bars_requested,
        }


def _is_cue(message: ChannelMessage, ctx: ModeContext) -> bool:
    """Whether the player pressed the trigger: [engine] trigger_cc at 64 or more, or a note-on of trigger_note."""
    settings = ctx.settings
    if isinstance(message, ControlChange):
        return message.control == settings.trigger_cc and message.value >= 64
    return isinstance(message, NoteOn) and message.velocity > 0 and message.note == settings.trigger_note


MODE = DrumsMode
