"""The protocol every engine mode follows, and the context the engine hands it on each call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from companion.core.events import ChannelMessage, Command, Log, Phrase
from companion.core.theory import Key

if TYPE_CHECKING:
    from companion.core.settings import EngineSettings


@dataclass(frozen=True, slots=True)
class ModeContext:
    """What a mode may read from the engine: settings, the key estimate, the grid, and answer numbering."""

    settings: EngineSettings
    key: Key | None
    beat_ticks: int
    bar_ticks: int
    next_answer_index: Callable[[], int]  # unique across modes for the whole session

    def next_beat(self, ticks: int) -> int:
        """The first beat line at or after `ticks` (grid from tick 0)."""
        return -((-ticks) // self.beat_ticks) * self.beat_ticks

    def next_bar(self, ticks: int) -> int:
        """The first bar line at or after `ticks` (grid from tick 0)."""
        return -((-ticks) // self.bar_ticks) * self.bar_ticks


class Mode:
    """Base of the modes; each lives in its own module under `companion.core.modes` with `MODE = TheClass`.

    Every method returns commands for the runtime and must not block. The defaults do nothing, so a mode
    overrides only what it reacts to. The engine has already applied the input-channel filter and the
    capture; `player_note_on` is True when the message was a note-on the capture accepted.
    """

    name: ClassVar[str] = "base"

    def handle(
        self, message: ChannelMessage, now_ticks: int, ctx: ModeContext, player_note_on: bool
    ) -> list[Command]:
        """A live message from the player (harmony under a live note is computed here)."""
        return []

    def phrase_ended(self, phrase: Phrase, now_ticks: int, ctx: ModeContext) -> list[Command]:
        """The capture closed a phrase."""
        return []

    def tick(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        """Called often by the engine thread; housekeeping by time."""
        return []

    def cancel(self, now_ticks: int, how: str = "stop") -> list[Command]:
        """Stop everything this mode has in flight (mode change, settings change, panic, transport stop)."""
        return []

    def transport_start(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        """The transport started (a DAW's Start, a Link session's start): bar 1 moved to now. Modes that answer the
        player have nothing planned to move; a mode that plays on its own starts again from the new position."""
        return []

    def after_panic(self) -> list[Command]:
        """What the player needs to know once a panic stopped this mode (a mode that waits for a key says so)."""
        return []

    def regenerate(self, now_ticks: int, ctx: ModeContext, new_seed: bool) -> list[Command]:
        """Replace the current output with a fresh take (same seed again, or the next seed)."""
        return []

    def store_phrase(self, now_ticks: int, ctx: ModeContext) -> list[Command]:
        """Keep the last phrase for later (morph mode's two ends); other modes say so."""
        return [Log("info", f"storing a phrase is for morph mode; this is {self.name} mode")]

    def snapshot(self, now_ticks: int) -> dict[str, Any]:
        """A small dict for the UI."""
        return {}
