"""The engine's settings: what Companion does and how, validated when made (presets and the UI build them)."""

from __future__ import annotations

import dataclasses
import pkgutil
from dataclasses import dataclass
from typing import Any

from companion.core import modes as modes_package
from companion.core.capture import CaptureSettings
from companion.core.events import PPQ
from companion.core.theory import Key
from models.chords.decode import CADENCES, CHANGE_EVERY

_NOT_MODES = {"base"}
HARMONY_STYLES = ("chorale", "block", "bass", "pad", "comping", "arpeggio")
"""chorale: the chorale model's alto, tenor and bass; the others voice the lead-sheet chord model's symbols."""
CLOCK_STYLES = ("comping", "arpeggio")
"""Styles that strike on the 16th grid as the clock runs, not only when the melody moves."""
SEED_MAX = 2**31 - 1  # answer n uses seed + n: every seed a session reaches stays within what torch and numpy take


def available_modes() -> list[str]:
    """Names of the mode modules under `companion.core.modes` (each one file with `MODE = TheClass`)."""
    names = [m.name for m in pkgutil.iter_modules(modes_package.__path__) if not m.name.startswith("_")]
    return sorted(name for name in names if name not in _NOT_MODES)


def _check_channel(name: str, value: int | None, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or not (0 <= value <= 15):
        raise ValueError(
            f"{name} must be a MIDI channel 0..15{' or none' if allow_none else ''}, got {value!r}"
        )


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Everything the engine's behaviour depends on. Channels are 0..15 as on the wire (shown as 1..16)."""

    mode: str = "call_response"
    """Which mode runs: a module name under companion/core/modes (see `available_modes()`)."""
    input_channel: int | None = None
    """Listen to this channel only; None listens to all 16 (omni)."""
    output_channel: int = 0
    """Channel the answers are played on."""
    thru: bool = False
    """Echo the player's notes to the output (off by default: the DAW usually monitors the player itself)."""
    thru_channel: int | None = None
    """Channel for the echoed notes; None uses `output_channel`."""
    silence_beats: float = 1.5
    """The phrase ends after this many beats with every key and the pedal up."""
    max_bars: int | None = 4
    """The phrase also ends after this many bars (None: no limit); keys still held are cut there."""
    trigger_cc: int | None = None
    """A controller (e.g. a foot switch) whose value >= 64 ends the phrase at once."""
    trigger_note: int | None = None
    """A note whose note-on ends the phrase at once; it is neither captured nor echoed."""
    response_start: str = "bar"
    """Start the answer on the next "bar" line (trading bars) or the next "beat" (snappier)."""
    response_bars: int = 2
    """Length of each answer in bars."""
    length_bars: int = 0
    """Generate mode: the piece stops after this many bars from its start, on a bar line; 0 plays until stopped."""
    lead_ticks: int = PPQ // 4
    """At least this long (a 16th) between the phrase end and the answer's start, for the generator."""
    on_player_resume: str = "stop"
    """When the player plays during an answer: "stop" it (note-offs at once) or "duck" it (softer)."""
    seed: int = 0
    """Base random seed; answer n uses seed + n, so a session replays identically."""
    temperature: float = 1.0
    """Generator randomness: below 1 closer to what you played, above 1 more adventurous."""
    key_lock: bool = True
    """Keep answers in the key estimated from your playing."""
    beats_per_bar: int = 4
    """Meter numerator."""
    beat_unit: int = 4
    """Meter denominator (4: the beat is a quarter note, 8: an eighth)."""
    morph_steps: int = 4
    """Morph mode: phrases played from the older of the last two phrases to the newer, both ends included."""
    # --- harmonize mode (companion/core/modes/harmonize.py, companion/harmony/worker.py) ---
    harmony_style: str = "chorale"
    """Harmonize: "chorale" (the chorale model's alto, tenor, bass) or a lead-sheet style voicing the chord
    model's symbols: "pad", "block" (close under the melody), "bass", "comping" or "arpeggio" (on the clock)."""
    change_every: str = "beat"
    """Harmonize: the chord changes at most every "beat", "half_bar" or "bar", or on the beats where the melody
    asks for it ("melody", lead-sheet styles); held notes hold it in between, except that a melody note
    clashing with the held chord re-voices it at once."""
    cadences: str = "home"
    """Harmonize a whole melody (`companion generate harmonize`, lead-sheet styles): "home" draws every phrase's
    last note to the tonic chord (its triad, seventh or sus4, whichever holds the note; the model may still hear a
    half cadence there), "melody" only the phrases that end on the tonic's root or third, leaving half cadences
    where the melody stops elsewhere. Live, a cadence is heard as it is played (a long tonic or third, or one on
    the bar line of a phrase's 4th bar) in both."""
    harmony_channels: tuple[int, int, int] | None = None
    """Harmonize, chorale style: channels of alto, tenor and bass; None plays them all on `output_channel`."""
    pad_low_note: int = 48
    """Harmonize, pad style: the pad's lowest note (48 = C3); the chord is voiced close above it."""
    chord_channel: int | None = None
    """Harmonize: read the chord your left hand holds on this channel to steer the harmony; None: off."""
    key: str | None = None
    """The key the key lock keeps to ("D minor", "F# dorian"), in every mode; None: the key estimated from your
    playing."""

    def __post_init__(self) -> None:
        if self.mode not in available_modes():
            raise ValueError(f"mode must be one of {', '.join(available_modes())}; got {self.mode!r}")
        _check_channel("input_channel", self.input_channel, allow_none=True)
        _check_channel("output_channel", self.output_channel, allow_none=False)
        _check_channel("thru_channel", self.thru_channel, allow_none=True)
        if self.response_start not in ("beat", "bar"):
            raise ValueError(f"response_start must be 'beat' or 'bar', got {self.response_start!r}")
        if self.on_player_resume not in ("stop", "duck"):
            raise ValueError(f"on_player_resume must be 'stop' or 'duck', got {self.on_player_resume!r}")
        if not isinstance(self.response_bars, int) or not (1 <= self.response_bars <= 64):
            raise ValueError(f"response_bars must be a whole number 1..64, got {self.response_bars!r}")
        if not isinstance(self.length_bars, int) or not (0 <= self.length_bars <= 512):
            raise ValueError(f"length_bars must be a whole number 0..512 (0: until stopped), got {self.length_bars!r}")
        if not isinstance(self.lead_ticks, int) or self.lead_ticks < 0:
            raise ValueError(f"lead_ticks must be a whole number >= 0, got {self.lead_ticks!r}")
        if not (0.0 < self.temperature <= 5.0):
            raise ValueError(f"temperature must be above 0 and at most 5, got {self.temperature!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= SEED_MAX:
            raise ValueError(f"seed must be a whole number 0..{SEED_MAX}, got {self.seed!r}")
        if not isinstance(self.morph_steps, int) or not (2 <= self.morph_steps <= 32):
            raise ValueError(f"morph_steps must be a whole number 2..32, got {self.morph_steps!r}")
        if self.beat_unit not in (2, 4, 8, 16):
            raise ValueError(f"beat_unit must be 2, 4, 8 or 16, got {self.beat_unit!r}")
        self._check_harmony()
        # The capture settings validate the rest (silence, bars, triggers, meter) with their own messages.
        self.capture_settings()

    def _check_harmony(self) -> None:
        if self.harmony_style not in HARMONY_STYLES:
            raise ValueError(f"harmony_style must be one of {', '.join(HARMONY_STYLES)}, got {self.harmony_style!r}")
        if self.change_every not in CHANGE_EVERY:
            raise ValueError(f"change_every must be one of {', '.join(CHANGE_EVERY)}, got {self.change_every!r}")
        if self.cadences not in CADENCES:
            raise ValueError(f"cadences must be one of {', '.join(CADENCES)}, got {self.cadences!r}")
        if self.harmony_channels is not None:
            channels = self.harmony_channels
            if not isinstance(channels, list | tuple) or len(channels) != 3:
                raise ValueError(f"harmony_channels must be 3 channels (alto, tenor, bass) or none, got {channels!r}")
            for name, channel in zip(("alto", "tenor", "bass"), channels, strict=True):
                _check_channel(f"harmony_channels ({name})", channel, allow_none=False)
            object.__setattr__(self, "harmony_channels", tuple(channels))  # a TOML list becomes a tuple
        if not isinstance(self.pad_low_note, int) or not (24 <= self.pad_low_note <= 96):
            raise ValueError(f"pad_low_note must be a note number 24..96 (48 = C3), got {self.pad_low_note!r}")
        _check_channel("chord_channel", self.chord_channel, allow_none=True)
        if self.chord_channel is not None and self.input_channel not in (None, self.chord_channel):
            raise ValueError(f"chord_channel {self.chord_channel} is filtered out by input_channel "
                             f"{self.input_channel}: set input_channel to none (omni) to read a chord channel")
        if self.key is not None:
            try:
                Key.parse(self.key)
            except ValueError as err:
                raise ValueError(f"key: {err}") from None

    @property
    def beat_ticks(self) -> int:
        return PPQ * 4 // self.beat_unit

    @property
    def bar_ticks(self) -> int:
        return self.beat_ticks * self.beats_per_bar

    def capture_settings(self) -> CaptureSettings:
        return CaptureSettings(
            input_channel=self.input_channel,
            silence_beats=self.silence_beats,
            max_bars=self.max_bars,
            trigger_cc=self.trigger_cc,
            trigger_note=self.trigger_note,
            beats_per_bar=self.beats_per_bar,
            beat_ticks=self.beat_ticks,
        )

    def replace(self, **changes: Any) -> EngineSettings:
        """A copy with `changes`; ValueError naming the field for unknown names or bad values."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)
