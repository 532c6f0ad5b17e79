"""Beat-relative event tokenizer: bars, grid positions, pitches, durations, velocity bins, conditioning.

A piece is ``STYLE METER KEY`` followed by bars. Every bar opens with ``BAR``; a note is
``POS [VEL] PITCH DUR``: ``POS`` (onset on a grid of ``positions_per_beat`` steps per quarter note,
counted from the bar line) is written only when it moves on, so a chord is ``POS PITCH DUR PITCH DUR``
in rising pitch order; ``VEL`` (a velocity bin) is written at the first note of each bar and whenever the
bin changes, so any bar can start a training window. A note is complete at its ``DUR`` token: a
``StreamDecoder`` turns a token stream into notes one at a time, in onset order.

The vocabulary is laid out in named contiguous blocks and every token has a printable name
(``Vocab.name``); ``TokenizerConfig`` round-trips through a plain dict (and so JSON).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

TOKENIZER_VERSION = 1
PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
DEFAULT_VELOCITY = 88  # the centre of a velocity bin, so default velocities round-trip


def _default_durations() -> tuple[int, ...]:
    # (at 12 steps a beat) every step up to a half note, 16ths up to a whole note, 8ths up to two whole
    # notes, quarters up to four
    return (tuple(range(1, 25)) + tuple(range(27, 49, 3)) + tuple(range(54, 97, 6))
            + tuple(range(108, 193, 12)))


@dataclass(frozen=True)
class TokenizerConfig:
    """Everything that fixes the vocabulary; stored in checkpoints and caches (to_dict/from_dict)."""

    version: int = TOKENIZER_VERSION
    positions_per_beat: int = 12  # holds 16ths (3), 8th triplets (4) and 16th triplets (2)
    styles: tuple[str, ...] = ("folk", "chorale", "renaissance", "classical", "user")
    meters: tuple[str, ...] = ("4/4", "3/4", "2/4", "6/8", "2/2", "3/2", "9/8", "12/8", "3/8", "6/4",
                               "5/4", "7/8", "5/8", "4/2", "7/4", "2/8")
    velocity_bins: int = 8
    durations: tuple[int, ...] = field(default_factory=_default_durations)  # in grid steps, ascending

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenizerConfig:
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()
                 if k in cls.__dataclass_fields__}
        return cls(**known)

    def bar_positions(self, meter: str) -> int:
        """Grid steps in one bar of ``meter`` ("6/8" -> 6 eighths = 3 quarters = 36 steps at 12/beat)."""
        num, den = (int(x) for x in meter.split("/"))
        steps = num * 4 * self.positions_per_beat
        if steps % den:
            raise ValueError(f"meter {meter} does not fit a grid of {self.positions_per_beat} steps a beat")
        return steps // den

    @property
    def max_bar_positions(self) -> int:
        return max(self.bar_positions(m) for m in self.meters)


class GridNote(NamedTuple):
    """A note on the tokenizer grid: onset and duration in grid steps from the first bar line."""

    onset: int
    duration: int
    pitch: int
    velocity: int


class Vocab:
    """Token ids in named contiguous blocks: ``block("pitch")`` is a range, ``name(id)`` prints a token."""

    BLOCK_ORDER = ("special", "style", "meter", "key", "pos", "vel", "pitch", "dur")

    def __init__(self, config: TokenizerConfig) -> None:
        sizes = {"special": 3, "style": len(config.styles), "meter": len(config.meters), "key": 25,
                 "pos": config.max_bar_positions, "vel": config.velocity_bins, "pitch": 128,
                 "dur": len(config.durations)}
        self.blocks: dict[str, range] = {}
        start = 0
        for name in self.BLOCK_ORDER:
            self.blocks[name] = range(start, start + sizes[name])
            start += sizes[name]
        self.size = start
        self.config = config
        self.pad, self.eos, self.bar = 0, 1, 2
        # kind of every token as a small int (index into BLOCK_ORDER; specials split out below)
        kinds = np.zeros(self.size, dtype=np.int8)
        for i, name in enumerate(self.BLOCK_ORDER):
            r = self.blocks[name]
            kinds[r.start : r.stop] = i
        self.kinds = kinds

    def __len__(self) -> int:
        return self.size

    def block(self, name: str) -> range:
        return self.blocks[name]

    def kind(self, token: int) -> str:
        if token in (self.pad, self.eos, self.bar):
            return ("pad", "eos", "bar")[token]
        return self.BLOCK_ORDER[int(self.kinds[token])]

    def token(self, block: str, index: int) -> int:
        r = self.blocks[block]
        if not 0 <= index < len(r):
            raise ValueError(f"{block} index {index} out of range 0..{len(r) - 1}")
        return r.start + index

    def style(self, name: str) -> int:
        try:
            return self.token("style", self.config.styles.index(name))
        except ValueError:
            choices = ", ".join(self.config.styles)
            raise ValueError(f"unknown style {name!r}; choose one of {choices}") from None

    def meter(self, meter: str) -> int:
        try:
            return self.token("meter", self.config.meters.index(meter))
        except ValueError:
            raise ValueError(f"unsupported meter {meter!r}; choose one of {', '.join(self.config.meters)}") \
                from None

    def key(self, key: tuple[int, str] | None) -> int:
        """Key token for (tonic pitch class, "major"|"minor"), or the "none" key."""
        if key is None:
            return self.token("key", 24)
        tonic, mode = key
        if mode not in ("major", "minor"):
            raise ValueError(f"key mode must be 'major' or 'minor', not {mode!r}")
        return self.token("key", int(tonic) % 12 + (12 if mode == "minor" else 0))

    def name(self, token: int) -> str:
        kind = self.kind(token)
        if kind in ("pad", "eos", "bar"):
            return kind.upper()
        i = token - self.blocks[kind].start
        cfg = self.config
        if kind == "style":
            return f"style:{cfg.styles[i]}"
        if kind == "meter":
            return f"meter:{cfg.meters[i]}"
        if kind == "key":
            return "key:none" if i == 24 else f"key:{PITCH_CLASS_NAMES[i % 12]}{'m' if i >= 12 else ''}"
        if kind == "dur":
            return f"dur:{cfg.durations[i]}"
        return f"{kind}:{i}"

    def names(self, tokens: Iterable[int]) -> str:
        return " ".join(self.name(int(t)) for t in tokens)


def transpose_key_token(vocab: Vocab, token: int, semitones: int) -> int:
    """The key token moved by ``semitones`` (the "none" key stays)."""
    i = token - vocab.block("key").start
    if i == 24:
        return token
    return vocab.block("key").start + (i - i % 12) + (i % 12 + semitones) % 12


class Tokenizer:
    """Notes <-> tokens on the beat grid, offline (whole pieces) and live (prompts in ticks)."""

    def __init__(self, config: TokenizerConfig | None = None) -> None:
        self.config = config or TokenizerConfig()
        self.vocab = Vocab(self.config)
        self._durations = list(self.config.durations)

    # --- quantities -------------------------------------------------------------------------------

    def velocity_bin(self, velocity: int) -> int:
        return min(self.config.velocity_bins - 1, max(0, int(velocity)) * self.config.velocity_bins // 128)

    def bin_velocity(self, vbin: int) -> int:
        """The velocity a bin plays at: its centre."""
        width = 128 / self.config.velocity_bins
        return min(127, max(1, int(vbin * width + width / 2)))

    def duration_index(self, steps: int) -> int:
        """Index of the representable duration nearest to ``steps`` (ties go to the shorter)."""
        d = self._durations
        i = bisect_left(d, steps)
        if i == 0:
            return 0
        if i == len(d):
            return len(d) - 1
        return i if d[i] - steps < steps - d[i - 1] else i - 1

    def quantize_duration(self, steps: int) -> int:
        return self._durations[self.duration_index(steps)]

    def ticks_to_steps(self, ticks: int, ppq: int) -> int:
        return int(round(ticks * self.config.positions_per_beat / ppq))

    def steps_to_ticks(self, steps: int, ppq: int) -> int:
        return int(round(steps * ppq / self.config.positions_per_beat))

    # --- offline ----------------------------------------------------------------------------------

    def header(self, style: str, meter: str, key: tuple[int, str] | None) -> list[int]:
        v = self.vocab
        return [v.style(style), v.meter(meter), v.key(key)]

    def encode_notes(self, notes: Iterable[Sequence[int]], meter: str, *, n_bars: int | None = None,
                     start_bar: int = 0) -> list[int]:
        """Body tokens (no header, no EOS) for grid notes; onsets count from the bar line of bar 0.

        Notes before ``start_bar`` are left out; ``n_bars`` (default: up to the last note) sets how many
        ``BAR`` tokens are written, counted from bar 0. Durations snap to the nearest representable one,
        duplicates (same onset and pitch) keep the longest.
        """
        v = self.vocab
        bar_len = self.config.bar_positions(meter)
        pos0, vel0, pitch0, dur0 = v.block("pos").start, v.block("vel").start, v.block("pitch").start, \
            v.block("dur").start
        best: dict[tuple[int, int], GridNote] = {}
        for raw in notes:
            n = raw if isinstance(raw, GridNote) else GridNote(*(int(x) for x in raw[:4]))
            if n.onset < start_bar * bar_len or not 0 <= n.pitch < 128:
                continue
            k = (n.onset, n.pitch)
            if k not in best or n.duration > best[k].duration:
                best[k] = n
        ordered = sorted(best.values(), key=lambda n: (n.onset, n.pitch))
        last_bar = (ordered[-1].onset // bar_len) if ordered else start_bar - 1
        total_bars = n_bars if n_bars is not None else last_bar + 1
        out: list[int] = []
        bar = start_bar - 1
        pos = -1
        vbin = -1
        for n in ordered:
            nb = n.onset // bar_len
            if nb >= total_bars:
                break
            while bar < nb:
                out.append(v.bar)
                bar += 1
                pos, vbin = -1, -1
            p = n.onset - nb * bar_len
            if p != pos:
                out.append(pos0 + p)
                pos = p
            b = self.velocity_bin(n.velocity)
            if b != vbin:
                out.append(vel0 + b)
                vbin = b
            out.append(pitch0 + n.pitch)
            out.append(dur0 + self.duration_index(max(1, n.duration)))
        while bar < total_bars - 1:
            out.append(v.bar)
            bar += 1
        return out

    def encode_piece(self, notes: Iterable[Sequence[int]], *, style: str, meter: str,
                     key: tuple[int, str] | None) -> list[int]:
        """Header, body and EOS for a whole piece."""
        return self.header(style, meter, key) + self.encode_notes(notes, meter) + [self.vocab.eos]

    def decode(self, tokens: Iterable[int], meter: str | None = None) -> list[GridNote]:
        """Grid notes of a token sequence (its METER token wins over ``meter``); bad tokens are skipped."""
        dec = StreamDecoder(self, meter or "4/4")
        notes = []
        for t in tokens:
            n = dec.feed(int(t))
            if n is not None:
                notes.append(n)
        return notes

    # --- live -------------------------------------------------------------------------------------

    def grid_notes(self, notes: Iterable[Sequence[int]], ppq: int) -> list[GridNote]:
        """(pitch, velocity, start_ticks, duration_ticks) tuples -> grid notes (onset >= 0 kept)."""
        out = []
        for pitch, velocity, start_ticks, duration_ticks in (tuple(n)[:4] for n in notes):
            onset = self.ticks_to_steps(int(start_ticks), ppq)
            if onset < 0:
                continue
            dur = max(1, self.ticks_to_steps(int(duration_ticks), ppq))
            out.append(GridNote(onset, dur, int(pitch), int(velocity)))
        return out

    def encode_prompt(self, notes: Iterable[Sequence[int]], *, ppq: int, style: str, meter: str = "4/4",
                      key: tuple[int, str] | None = None, answer_start_ticks: int | None = None,
                      max_bars: int | None = None) -> Prompt:
        """A live phrase -> prompt tokens that end where the answer starts.

        ``notes`` are (pitch, velocity, start_ticks, duration_ticks) with tick 0 on a bar line. The answer
        starts at ``answer_start_ticks`` (default: the first bar line at or after the end of the last
        note); notes from there on are left out. ``max_bars`` keeps only the most recent bars.
        """
        grid = self.grid_notes(notes, ppq)
        bar_len = self.config.bar_positions(meter)
        if answer_start_ticks is None:
            end = max((n.onset + n.duration for n in grid), default=0)
            answer_start = -(-end // bar_len) * bar_len
        else:
            answer_start = self.ticks_to_steps(answer_start_ticks, ppq)
        answer_start = max(0, answer_start)
        answer_bar = answer_start // bar_len
        start_bar = 0 if max_bars is None else max(0, answer_bar - max_bars + 1)
        kept = [n for n in grid if n.onset < answer_start]
        body = self.encode_notes(kept, meter, n_bars=answer_bar + 1, start_bar=start_bar)
        # the answer's bar line is the last BAR token; its first position may not be earlier than min_pos
        tokens = self.header(style, meter, key) + body
        last_pos = -1
        for n in kept:
            if n.onset // bar_len == answer_bar:
                last_pos = max(last_pos, n.onset - answer_bar * bar_len)
        return Prompt(tokens=tokens, meter=meter, bar_positions=bar_len, start_bar=start_bar,
                      answer_start=answer_start,
                      min_pos=max(last_pos + 1, answer_start - answer_bar * bar_len))


@dataclass(frozen=True)
class Prompt:
    """Prompt tokens and where the answer starts (grid steps from the phrase's bar line)."""

    tokens: list[int]
    meter: str
    bar_positions: int
    start_bar: int  # the bar the first BAR token stands for
    answer_start: int
    min_pos: int  # earliest position the answer may use in its first (already opened) bar


class StreamDecoder:
    """Turns tokens into grid notes one at a time; also the grammar state that sampling masks read.

    ``feed(token)`` returns a ``GridNote`` when the token completes one (at ``DUR``), else None.
    Tokens that break the grammar are ignored (counted in ``skipped``), so a decoder never raises mid-answer.
    """

    def __init__(self, tokenizer: Tokenizer, meter: str = "4/4", start_bar: int = -1) -> None:
        self.tok = tokenizer
        v = tokenizer.vocab
        self._blocks = v.blocks
        self.meter = meter
        self.bar_positions = tokenizer.config.bar_positions(meter)
        self.bar = start_bar  # index of the current bar (-1 before the first BAR)
        self.pos = -1  # position of the current onset in the bar; -1 = none yet in this bar
        self.pitch = -1  # last pitch at the current position; -1 = none yet
        self.vel_bin = -1  # current velocity bin; -1 = none yet in this bar
        self.last_kind = "start"  # kind of the last accepted token
        self.header_done = False
        self.notes_in_bar = 0
        self.chord_size = 0  # notes so far at the current position
        self.ended = False
        self.skipped = 0
        self._pending_pitch = -1

    def expected(self) -> tuple[str, ...]:
        """The token kinds the grammar allows next."""
        k = self.last_kind
        if self.ended:
            return ()
        if k == "start":
            return ("style",)
        if k == "style":
            return ("meter",)
        if k == "meter":
            return ("key",)
        if k == "key":
            return ("bar",)
        if k == "bar":
            return ("pos", "bar", "eos")
        if k == "pos":
            return ("vel",) if self.vel_bin < 0 else ("vel", "pitch")
        if k == "vel":
            return ("pitch",)
        if k == "pitch":
            return ("dur",)
        if k == "dur":
            return ("vel", "pitch", "pos", "bar", "eos")
        return ()

    def feed(self, token: int) -> GridNote | None:
        kind = self.tok.vocab.kind(token)
        if kind not in self.expected():
            self.skipped += 1
            return None
        i = token - self._blocks[kind].start if kind in self._blocks else 0
        self.last_kind = kind
        if kind == "meter":
            self.meter = self.tok.config.meters[i]
            self.bar_positions = self.tok.config.bar_positions(self.meter)
        elif kind == "bar":
            self.bar += 1
            self.pos, self.pitch, self.vel_bin, self.notes_in_bar, self.chord_size = -1, -1, -1, 0, 0
        elif kind == "eos":
            self.ended = True
        elif kind == "pos":
            self.pos, self.pitch, self.chord_size = i, -1, 0
        elif kind == "vel":
            self.vel_bin = i
        elif kind == "pitch":
            self._pending_pitch = i
        elif kind == "dur":
            self.pitch = self._pending_pitch
            self.notes_in_bar += 1
            self.chord_size += 1
            vel = self.tok.bin_velocity(self.vel_bin) if self.vel_bin >= 0 else DEFAULT_VELOCITY
            return GridNote(max(0, self.bar) * self.bar_positions + self.pos, self.tok.config.durations[i],
                            self.pitch, vel)
        return None

    @property
    def onset(self) -> int:
        """Grid step of the current position (or of the current bar line if no position yet)."""
        return max(0, self.bar) * self.bar_positions + max(0, self.pos)
