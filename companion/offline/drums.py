"""`companion generate drums MELODY.mid -o OUT.mid [--style funk]`: a drum track under a file, bar by bar,
following its tempo, meter and the accents of what it holds (the drum GAN, models/drums)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from companion.core.drums import (
    DRUM_CHANNEL,
    DRUM_STYLES,
    STEPS_PER_MODEL_BAR,
    DrumFeel,
    bar_plan,
    drum_density,
    drum_velocity,
    is_phrase_end,
    player_bar,
)
from companion.core.events import TICKS_PER_16TH, Note
from companion.errors import InputFileError, UsageError, checkpoint_errors
from companion.files.midifile import MidiInput
from companion.worker.drum_voice import DrumAsk, DrumGenerator

log = logging.getLogger("companion")


def drum_feel(style: str | None, **changes: Any) -> DrumFeel:
    """The feel for a style name from the command line; a UsageError naming the styles there are."""
    style = (style or "rock").lower()
    if style not in DRUM_STYLES:
        raise UsageError(f"--style {style!r} is not a drum style; use one of: {', '.join(DRUM_STYLES)}")
    return DrumFeel(style=style, **changes)


def drums_file(args: argparse.Namespace, source: MidiInput, settings: dict[str, Any]) -> list[Note]:
    """One drum bar under every bar of the input (to its last note's bar), on channel 10: a fill at the phrase
    ends (at the feel's fill rate), a break where the melody stops, and always a fill on a section's last bar:
    the last bar of a pause before the melody comes back in (its phrases count again from there), and the
    file's last bar."""
    if source.bar_ticks % TICKS_PER_16TH or source.bar_ticks // TICKS_PER_16TH > STEPS_PER_MODEL_BAR:
        raise InputFileError(f"{source.path}: a bar of {source.beats_per_bar}/{source.beat_unit} does not fit the "
                             "drummer's 16 steps; give a file in 4/4, 3/4, 2/4 or an 8th-note meter up to 16/16")
    feel = drum_feel(getattr(args, "style", None))
    with checkpoint_errors():
        drummer = DrumGenerator(getattr(args, "checkpoint", None))
    melody = [n for n in source.notes if n.channel != DRUM_CHANNEL]
    n_bars = max(1, -(-source.end_ticks // source.bar_ticks))
    temperature = float(settings.get("temperature") or 1.0)
    players = [player_bar(melody, i * source.bar_ticks, source.bar_ticks) for i in range(n_bars)]
    out: list[Note] = []
    before = None
    phrase_origin = 0  # the bar the current section's phrases count from
    for i, player in enumerate(players):
        start = i * source.bar_ticks
        if i > 0 and player.played and not players[i - 1].played:  # the player comes back: a new section
            phrase_origin = i
        # the last bar of a pause before the player comes back in, and the file's last bar, end a section
        section_end = i == n_bars - 1 or (not player.played and players[i + 1].played and
                                          any(p.played for p in players[:i]))
        phrase_end = i >= phrase_origin and is_phrase_end(i - phrase_origin, feel.phrase_bars)
        taps, fill = bar_plan(i, phrase_end, player, before, feel, args.seed, section_end)
        ask = DrumAsk(feel, source.bpm, taps, drum_density(feel, player), drum_velocity(player), fill)
        out += drummer.bar(ask, start, source.bar_ticks, args.seed + i, temperature, feel_seed=args.seed)
        before = player
    log.info("drums: %d bars of %s at %.0f BPM, seed %d", n_bars, feel.style, source.bpm, args.seed)
    return out
