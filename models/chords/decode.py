"""Choosing chords: offline over a whole melody (Viterbi, looking ahead), live one slot at a time, and the
rule baseline (per bar, the diatonic triad covering most of the bar's melody). Pure numpy.

Both decoders score each slot's chords by the model's log-probability (it hears the melody, never the chords
chosen; offline, the checkpoint's bidirectional reader where it has one: models/chords/reader.py), plus a
melody fit (the slot's melody in the chord, less a semitone rub), plus a cadence (the tonic chord where a
phrase ends on a note that fits it; offline, at the melody's end, in the key it ends in). Offline, a Viterbi
pass then adds a harmonic-rhythm prior (a change costs least on a downbeat, more on the half bar, most on
other beats) and leans on the rule's chord where the model is unsure; live, the chord at a change line is the
best of those scores, kept unless another beats it by a margin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from models.chords import vocab
from models.chords.features import (
    NO_PREV,
    ending_key,
    frame_of,
    histogram,
    mode_in_frame,
    phrase_ends,
    slot_vector,
    song_arrays,
)

if TYPE_CHECKING:  # the live path needs numpy only: torch is imported where the model is read
    from models.chords.stepper import ChordStepper

CHANGE_EVERY = ("beat", "half_bar", "bar", "melody")
CADENCES = ("home", "melody")  # every phrase end drawn to the tonic / only those ending on its root or third
# log-probability a chord change costs where it falls (offline); "melody" adds MELODY_CHANGE_COST on top
CHANGE_COST = {"downbeat": 0.3, "half_bar": 1.0, "beat": 1.5}
MELODY_CHANGE_COST = 1.0  # "where the melody asks": a change must gain this much more over holding
FIT_WEIGHT = 2.0  # log-probability added per slot for the share of its melody in the chord, less its rubs
RULE_WEIGHT = 1.0  # offline: for the rule's chord, times (1 - the model's top probability)^2: where it is unsure
CADENCE_BONUS = 6.0  # the tonic chord under a phrase's last note, unless that note rubs against it
INNER_CADENCE_BONUS = 5.0  # offline: the tonic under a phrase end inside the song, per slot (chosen on the valid songs)
PHRASE_BARS = 4  # live: a phrase ends in its 4th (or 8th) bar; a tonic or third there on the bar line cadences
_MASKS = np.array([[pc in vocab.chord_pcs(c) for pc in range(12)] for c in range(vocab.N_CHORDS)], dtype=np.float32)
_RUBS = np.clip(np.roll(_MASKS, 1, axis=1) + np.roll(_MASKS, -1, axis=1), 0, 1) * (1 - _MASKS)  # (C, 12)


def melody_fit(melody: np.ndarray, n_slots: int, steps_per_slot: int) -> np.ndarray:
    """(S, C): per slot and chord, the share of the slot's sounding melody in the chord minus the share a
    semitone from a chord tone (a rub). Slots without melody score 0 for every chord."""
    out = np.zeros((n_slots, vocab.N_CHORDS), dtype=np.float32)
    for s in range(n_slots):
        span = melody[s * steps_per_slot:(s + 1) * steps_per_slot]
        span = span[span >= 0] % 12
        if len(span):
            share = np.bincount(span, minlength=12).astype(np.float32) / len(span)
            out[s] = _MASKS @ share - _RUBS @ share
    return out


def note_fit(pitch: int) -> np.ndarray:
    """(C,) one melody note's fit: 1 in the chord, -1 a semitone from a chord tone, else 0."""
    return _MASKS[:, pitch % 12] - _RUBS[:, pitch % 12]


def tonic_of(key: tuple[int, str]) -> int:
    return vocab.chord_index(key[0], "m" if key[1] == "minor" else "")


def tonic_family(key: tuple[int, str]) -> tuple[int, ...]:
    """The chords that close on the key's tonic: its triad, its diatonic seventh (maj7 in major, m7 in minor) and
    its sus4 (the evaluation counts each as the tonic chord)."""
    minor = key[1] == "minor"
    return (tonic_of(key), vocab.chord_index(key[0], "m7" if minor else "maj7"), vocab.chord_index(key[0], "sus4"))


def home_chords(pitch: int, key: tuple[int, str]) -> list[int]:
    """The tonic-family chords a phrase may close on under `pitch`: those it does not rub against."""
    return [c for c in tonic_family(key) if not _RUBS[c, pitch % 12]]


def cadence(melody: np.ndarray, slot_pos: np.ndarray, steps_per_slot: int, key: tuple[int, str],
            song_key: tuple[int, str] | None = None, cadences: str = "home") -> np.ndarray:
    """(S, C): the cadence bonus of each phrase end (`features.phrase_ends`), on every slot its last note sounds
    in: CADENCE_BONUS at the melody's end for the tonic of `key` (the key the melody ends in), INNER_CADENCE_BONUS
    inside the song for the tonic of `song_key`. `cadences` "home": every phrase end draws to the tonic, on
    whichever of its chords (`home_chords`) the last note does not rub against; "melody": the triad only, and inside the
    song only where the phrase ends on the tonic's root or third (a phrase ending on the fifth or the second is
    left to the model: a half cadence is as likely there)."""
    n_slots = len(slot_pos)
    out = np.zeros((n_slots, vocab.N_CHORDS), dtype=np.float32)
    ends = phrase_ends(melody, slot_pos, steps_per_slot)
    if not ends:
        return out
    targets = [(end, song_key, INNER_CADENCE_BONUS) for end in ends[:-1]] if song_key is not None else []
    targets.append((ends[-1], key, CADENCE_BONUS))
    for end, k, bonus in targets:
        pitch = int(melody[end])
        chords = home_chords(pitch, k)
        if cadences == "melody":  # the triad alone, inside the song only on the tonic's root or third
            triad = tonic_of(k)
            lands = end == ends[-1] or pitch % 12 in vocab.chord_pcs(triad)[:2]
            chords = [c for c in chords if c == triad] if lands else []
        held = end + 1  # the phrase's last note, as long as it sounds: a cadence holds under all of it
        while held < len(melody) and melody[held] == pitch:
            held += 1
        for slot in range(end // steps_per_slot, min(n_slots, -(-held // steps_per_slot))):
            out[slot, chords] = bonus
    return out


def change_allowed(slot_pos: np.ndarray, change_every: str) -> np.ndarray:
    """(S,) bool: may the chord change at the start of each slot (a beat, half a bar or a bar line)?"""
    per_bar = int(slot_pos.max()) + 1 if len(slot_pos) else 1
    return np.array([change_cost(int(p), per_bar, change_every) < np.inf for p in slot_pos], dtype=bool)


def change_cost(pos: int, per_bar: int, change_every: str) -> float:
    """What a chord change at position `pos` of a bar of `per_bar` slots costs (log-probability): the
    harmonic-rhythm prior, inf off the lines `change_every` allows (a bar, half a bar, any beat)."""
    half = max(1, per_bar // 2)
    if (change_every == "bar" and pos != 0) or (change_every == "half_bar" and pos % half):
        return np.inf
    cost = CHANGE_COST["downbeat"] if pos == 0 else CHANGE_COST["half_bar"] if pos % half == 0 else CHANGE_COST["beat"]
    return cost + (MELODY_CHANGE_COST if change_every == "melody" else 0.0)


def change_costs(slot_pos: np.ndarray, change_every: str) -> np.ndarray:
    """(S,) change_cost at each slot of a melody."""
    per_bar = int(slot_pos.max()) + 1 if len(slot_pos) else 1
    return np.array([change_cost(int(p), per_bar, change_every) for p in slot_pos], dtype=np.float64)


def chord_log_probs(stepper: ChordStepper, melody: np.ndarray, slot_pos: np.ndarray, steps_per_slot: int,
                    key: tuple[int, str], lookahead: bool = True) -> np.ndarray:
    """(S, C) the model's log-probabilities of each slot's chord (absolute classes), from the melody alone: with
    `lookahead`, by the whole-melody reader where the checkpoint has one, else by the stepper."""
    frame = frame_of(key)
    x = song_arrays(melody, slot_pos, steps_per_slot, frame, lookahead, mode=key[1])
    reader = getattr(stepper, "reader", None)  # a ChordModel (models.chords.model) may hold one
    if lookahead and reader is not None:
        out = reader.log_probs(x)
    else:
        h = stepper.initial(1)
        out = np.zeros((len(x), vocab.N_CHORDS), dtype=np.float32)
        for s in range(len(x)):
            logp, h = stepper.step(h, x[s:s + 1], np.array([NO_PREV]))
            out[s] = logp[0]
    return np.roll(out.reshape(len(x), 12, vocab.N_QUALITIES), frame, axis=1).reshape(len(x), -1)


def viterbi(scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """(S,) the chord path maximizing the summed slot scores (S, C) less `costs[s]` for each change at slot s."""
    n_slots, n_chords = scores.shape
    total = scores[0].astype(np.float64)
    back = np.zeros((n_slots, n_chords), dtype=np.int64)
    for s in range(1, n_slots):
        best = int(np.argmax(total))
        move = total[best] - costs[s]
        back[s] = np.where(move > total, best, np.arange(n_chords))
        total = np.maximum(total, move) + scores[s]
    path = np.zeros(n_slots, dtype=np.int64)
    if n_slots:
        path[-1] = int(np.argmax(total))
    for s in range(n_slots - 1, 0, -1):
        path[s - 1] = back[s, path[s]]
    return path


def decode_offline(stepper: ChordStepper, melody: np.ndarray, slot_pos: np.ndarray, steps_per_slot: int,
                   key: tuple[int, str], change_every: str = "melody", cadences: str = "home") -> np.ndarray:
    """(S,) absolute chord classes, one per slot, by Viterbi over the whole melody (the model looking ahead).

    Where the chord may not change (between lines of `change_every`) the held chord is scored against every
    slot it spans, so a chord chosen for a bar fits the whole bar."""
    if cadences not in CADENCES:
        raise ValueError(f"cadences must be one of {', '.join(CADENCES)}, got {cadences!r}")
    n_slots = len(slot_pos)
    if n_slots == 0:
        return np.zeros(0, dtype=np.int64)
    logp = chord_log_probs(stepper, melody, slot_pos, steps_per_slot, key, lookahead=True)
    unsure = (1.0 - np.exp(logp.max(axis=1))) ** 2  # (S,)
    rule = np.zeros_like(logp)
    rule[np.arange(n_slots), rule_chords(melody, slot_pos, steps_per_slot, key, "bar")] = 1.0
    scores = (logp + FIT_WEIGHT * melody_fit(melody, n_slots, steps_per_slot)
              + RULE_WEIGHT * unsure[:, None] * rule
              + cadence(melody, slot_pos, steps_per_slot, ending_key(melody, slot_pos, steps_per_slot), key,
                        cadences=cadences))
    return viterbi(scores, change_costs(slot_pos, change_every))


class LiveChords:
    """The model heard one slot at a time, as a player plays: `log_probs(onset_pitch)` at a slot's start gives
    that slot's chord from what has been played so far; `end_slot(pitches)` closes the slot; `choose` picks
    the chord at a change line (the live worker and `decode_live` both use it).

    Live, the model hears the melody only (it was trained so): holding is `choose`'s and the worker's choice.
    The key's mode is the one given (a set key) or, when only its scale is known, guessed from the melody
    heard so far (`features.mode_in_frame`) at the end of each slot."""

    def __init__(self, stepper: ChordStepper, frame: int = 0, mode: str | None = None) -> None:
        self.stepper = stepper
        self.reset(frame, mode)

    def reset(self, frame: int | None = None, mode: str | None = None) -> None:
        """A new piece (in `frame`, with `mode` if known; both kept when frame is None)."""
        if frame is not None:
            self.frame, self.given_mode = frame, mode
        self.mode = self.given_mode
        self._h = self.stepper.initial(1)
        self._prev_hist = np.zeros(12, dtype=np.float32)
        self._heard = np.zeros(12, dtype=np.float64)  # steps each absolute pitch class sounded in this piece
        self._pending: tuple[np.ndarray, np.ndarray] | None = None  # (log-probs, h) of the slot in progress

    def log_probs(self, onset_pitch: int | None, pos: int, keep: bool = True) -> np.ndarray:
        """(n_chords,) log-probabilities of the slot's chord, absolute classes (index = chord class); `keep`
        False only looks (what the next slot would bring), the slot in progress is not touched."""
        x = slot_vector(onset_pitch, self._prev_hist, pos, self.frame, mode=self.mode)[None]
        logp, h = self.stepper.step(self._h, x, np.array([NO_PREV]))
        if keep:
            self._pending = (logp[0], h)
        return np.roll(logp[0].reshape(12, vocab.N_QUALITIES), self.frame, axis=0).reshape(-1)

    def end_slot(self, pitches: np.ndarray, pos: int) -> None:
        """The slot is over: the model takes what sounded."""
        if self._pending is None:
            self.log_probs(int(pitches[0]) if len(pitches) else None, pos)
        assert self._pending is not None
        self._h = self._pending[1]
        self._prev_hist = histogram(pitches, self.frame)
        self._pending = None
        sounding = pitches[pitches >= 0]
        if len(sounding) and self.given_mode is None:
            np.add.at(self._heard, sounding % 12, 1.0)
            self.mode = mode_in_frame(self._heard, self.frame)

    def tonic(self) -> int | None:
        """The tonic chord of the key the model reads in (None when the mode is not known)."""
        if self.mode is None:
            return None
        return tonic_of(((self.frame - 3) % 12 if self.mode == "minor" else self.frame, self.mode))

    def choose(self, pitch: int, pos: int, held: int | None, cost: float, allowed: np.ndarray | None = None,
               phrase_end: bool = False) -> int:
        """The chord under melody note `pitch` at a slot's start (position `pos` in the bar): the model's
        log-probability plus the note's fit, within `allowed` (the key lock); at a `phrase_end` the tonic
        chord when the note fits it. The `held` chord stays unless another scores `cost` more (change_cost:
        inf off a change line), never when the note rubs against it."""
        score = self.log_probs(pitch, pos) + FIT_WEIGHT * note_fit(pitch)
        tonic = self.tonic()
        if phrase_end and tonic is not None and not _RUBS[tonic, pitch % 12]:
            score[tonic] += CADENCE_BONUS
        if allowed is not None:
            score = np.where(allowed, score, -np.inf)
        best = int(np.argmax(score))
        if held is not None and held >= 0 and not _RUBS[held, pitch % 12]:
            if score[best] - score[held] < cost:
                return held
        return best


def live_phrase_end(pitch: int, pos: int, bar: int, tonic: int | None, held: bool = False) -> bool:
    """Live, without look-ahead, a cadence: the root or the third of the tonic chord either held over a change
    line (the melody lands on a long note) or struck on the bar line of a phrase's last bar (the PHRASE_BARS-th,
    counted from the first full bar)."""
    if tonic is None or pitch < 0 or pitch % 12 not in vocab.chord_pcs(tonic)[:2]:
        return False
    return held or (pos == 0 and bar % PHRASE_BARS == PHRASE_BARS - 1)


def decode_live(stepper: ChordStepper, melody: np.ndarray, slot_pos: np.ndarray, steps_per_slot: int,
                key: tuple[int, str], change_every: str = "beat") -> np.ndarray:
    """(S,) chords as the live path picks them: at each line from what was played so far, held between lines."""
    live = LiveChords(stepper, frame_of(key))  # the scale known, the mode guessed as it is live
    costs = change_costs(slot_pos, change_every)
    out = np.zeros(len(slot_pos), dtype=np.int64)
    chord: int | None = None
    bar = -1
    for s, pos in enumerate(slot_pos):
        bar += int(pos == 0)
        span = melody[s * steps_per_slot:(s + 1) * steps_per_slot]
        onset = int(span[0]) if len(span) else -1
        if onset >= 0:
            held = s > 0 and int(melody[s * steps_per_slot - 1]) == onset  # the note goes on over the line
            end = live_phrase_end(onset, int(pos), bar, live.tonic(), held)
            chord = live.choose(onset, int(pos), chord, float(costs[s]), phrase_end=end)
        else:
            live.log_probs(None, int(pos))
        out[s] = chord if chord is not None else tonic_of(key)
        live.end_slot(span, int(pos))
    return out


# --- the rule baseline ---------------------------------------------------------------------------------------

_DEGREE_PREFERENCE = (0, 4, 3, 5, 1, 2, 6)  # ties go to I, V, IV, vi, ii, iii, vii (scale degrees 0-based)


def diatonic_triads(key: tuple[int, str]) -> list[int]:
    """The key's seven triads (from its own tonic: C minor -> Cm, Ddim, Eb, Fm, Gm, Ab, Bb), as classes."""
    tonic, mode = key
    steps = (0, 2, 3, 5, 7, 8, 10) if mode == "minor" else vocab.MAJOR_SCALE
    scale = [(tonic + s) % 12 for s in steps]
    out = []
    for d in range(7):
        root, third, fifth = scale[d], scale[(d + 2) % 7], scale[(d + 4) % 7]
        quality = {(4, 7): "", (3, 7): "m", (3, 6): "dim"}[((third - root) % 12, (fifth - root) % 12)]
        out.append(vocab.chord_index(root, quality))
    return out


def rule_chords(melody: np.ndarray, slot_pos: np.ndarray, steps_per_slot: int, key: tuple[int, str],
                change_every: str = "bar") -> np.ndarray:
    """(S,) per change period (a bar by default), the diatonic triad whose notes sound longest in the melody."""
    triads = diatonic_triads(key)
    allowed = change_allowed(slot_pos, change_every)
    starts = [s for s in range(len(slot_pos)) if allowed[s] or s == 0] + [len(slot_pos)]
    out = np.zeros(len(slot_pos), dtype=np.int64)
    chord = triads[0]
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        span = melody[a * steps_per_slot:b * steps_per_slot]
        sounding = span[span >= 0] % 12
        if len(sounding):
            weight = np.bincount(sounding, minlength=12)
            cover = [(int(sum(weight[pc] for pc in vocab.chord_pcs(t))), -rank)
                     for rank, t in ((_DEGREE_PREFERENCE.index(d), triads[d]) for d in range(7))]
            chord = triads[max(range(7), key=lambda d: cover[d])]
        out[a:b] = chord
    return out
