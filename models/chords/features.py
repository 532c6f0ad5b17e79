"""What the chord model hears at each slot (a beat), in the key's major frame; shared by training and live use.

Per slot: the melody note sounding at its start (13: 12 pitch classes relative to the frame, or none), the
previous slot's melody as a duration histogram, its position in the bar, the key's mode (major, minor, or
neither when it is not known: A minor and C major share a frame, the mode tells them apart) and, offline only
(`lookahead`), this slot's and the next slot's histograms and whether it is the last slot with melody. The
previous chord goes in separately, as an embedding index (vocab.N_CHORDS = none yet).
"""

from __future__ import annotations

import numpy as np

from models.chords import vocab

N_POS = 4  # positions in the bar the model tells apart: downbeat, 2nd, 3rd, 4th or later
MODE_COLUMNS = (13 + 12 + 12 + 12 + 1 + 1 + N_POS, 13 + 12 + 12 + 12 + 1 + 1 + N_POS + 1)  # major, minor flags
N_FEATURES = MODE_COLUMNS[1] + 1
NO_PREV = vocab.N_CHORDS  # the previous-chord index at the start of a piece (or after no chord)
FINAL_TONIC = 0.2  # melody_key: added to a key's profile correlation when the melody ends on its tonic
FINAL_TRIAD = 0.1  # ... and when it ends on its third or fifth (chosen on the training songs' annotated keys)
_PROFILES = {"major": np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
             "minor": np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])}  # K-S
# per mode, the profile with its tonic on each pitch class (row), centred and of unit length: live, a mode guess
# is then two dot products
_CENTRED = {mode: np.stack([np.roll((p - p.mean()) / np.linalg.norm(p - p.mean()), t) for t in range(12)])
            for mode, p in _PROFILES.items()}


def melody_key(melody: np.ndarray) -> tuple[int, str]:
    """The key of a whole melody (offline: its end is known): the Krumhansl-Schmuckler profile correlation of its
    duration-weighted pitch classes, plus FINAL_TONIC / FINAL_TRIAD for a key whose tonic / tonic triad holds
    the last note (a tune ends at home: this moved the training songs' agreement with their annotated keys
    from 0.69 to 0.77 (POP909) and 0.67 to 0.86 (OpenEWLD key signatures)). C major when there is no melody."""
    sounding = np.asarray(melody)[np.asarray(melody) >= 0].astype(np.int64)
    hist = np.bincount(sounding % 12, minlength=12).astype(np.float64)
    if np.count_nonzero(hist) < 2:
        return (int(sounding[-1]) % 12, "major") if len(sounding) else (0, "major")
    last = int(sounding[-1]) % 12
    best, best_score = (0, "major"), -np.inf
    for mode, profile in _PROFILES.items():
        third = 4 if mode == "major" else 3
        for tonic in range(12):
            score = float(np.corrcoef(hist, np.roll(profile, tonic))[0, 1])
            score += FINAL_TONIC * (last == tonic) + FINAL_TRIAD * (last in ((tonic + third) % 12, (tonic + 7) % 12))
            if score > best_score:
                best, best_score = (tonic, mode), score
    return best


def frame_of(key: tuple[int, str]) -> int:
    """The tonic of the major scale a key's notes belong to (A minor -> C, the frame the model works in)."""
    tonic, mode = key
    return (tonic + 3) % 12 if mode == "minor" else tonic % 12


ENDING_BARS = 8  # ending_key: the bars before the last note that tell the key a tune ends in


def ending_key(melody: np.ndarray, slot_pos: np.ndarray, steps_per_slot: int) -> tuple[int, str]:
    """The key the melody ends in: melody_key over its last ENDING_BARS bars (a song that modulates, as pop
    songs do up a semitone for the last chorus, cadences in its new key). On the training songs the annotated
    last chord is this key's tonic chord 0.61 (POP909) and 0.82 (OpenEWLD) of the time, against 0.56 and 0.73
    for the key of the whole melody."""
    sounding = np.nonzero(np.asarray(melody) >= 0)[0]
    if not len(sounding):
        return (0, "major")
    per_bar = (int(slot_pos.max()) + 1 if len(slot_pos) else 4) * steps_per_slot
    last = int(sounding[-1])
    return melody_key(melody[max(0, last + 1 - ENDING_BARS * per_bar):last + 1])


def phrase_ends(melody: np.ndarray, slot_pos: np.ndarray, steps_per_slot: int,
                onset: np.ndarray | None = None) -> list[int]:
    """The onset steps of the last note of each phrase: a note followed by at least half a bar of rest, and the
    melody's last note. ``onset`` marks where notes start (default: where the pitch changes or follows a rest)."""
    if onset is None:
        onset = np.r_[melody[:1] >= 0, (melody[1:] >= 0) & (melody[1:] != melody[:-1])]
    slots_per_bar = int(slot_pos.max()) + 1 if len(slot_pos) else 4
    min_rest = max(1, slots_per_bar * steps_per_slot // 2)
    sounding = np.nonzero(melody >= 0)[0]
    if len(sounding) == 0:
        return []
    lasts = [int(a) for a, b in zip(sounding, sounding[1:], strict=False) if b - a - 1 >= min_rest]
    lasts.append(int(sounding[-1]))
    onsets = np.nonzero(onset)[0]
    found = (np.searchsorted(onsets, s, side="right") for s in lasts)
    return sorted({int(onsets[i - 1]) for i in found if i > 0})


def mode_in_frame(pc_weights: np.ndarray, frame: int) -> str | None:
    """Live, the key's scale is known but not its mode: "major" (tonic = frame) or "minor" (its relative minor),
    whichever profile correlates better with the melody heard so far (12 pitch-class weights); None before
    three pitch classes have sounded."""
    if np.count_nonzero(pc_weights) < 3:
        return None
    centred = pc_weights - pc_weights.mean()  # the correlations' shared factors cancel in the comparison
    major = float(centred @ _CENTRED["major"][frame % 12])
    minor = float(centred @ _CENTRED["minor"][(frame - 3) % 12])
    return "minor" if minor > major else "major"


def histogram(pitches: np.ndarray, frame: int) -> np.ndarray:
    """Share of the steps each pitch class sounds in (frame-relative); all zeros for silence."""
    sounding = pitches[pitches >= 0]
    out = np.zeros(12, dtype=np.float32)
    if len(sounding):
        np.add.at(out, (sounding - frame) % 12, 1.0)
        out /= len(pitches)
    return out


def slot_vector(onset_pitch: int | None, prev_hist: np.ndarray, pos: int, frame: int,
                cur_hist: np.ndarray | None = None, next_hist: np.ndarray | None = None,
                last: bool = False, mode: str | None = None) -> np.ndarray:
    """One slot's features; leave cur_hist/next_hist out for the live (no lookahead) reading, `mode` out
    ("major" | "minor") when the key's mode is not known."""
    x = np.zeros(N_FEATURES, dtype=np.float32)
    x[12 if onset_pitch is None or onset_pitch < 0 else (onset_pitch - frame) % 12] = 1.0
    x[13:25] = prev_hist
    if cur_hist is not None and next_hist is not None:
        x[25:37] = cur_hist
        x[37:49] = next_hist
        x[49] = float(last)
        x[50] = 1.0  # lookahead present
    x[51 + min(int(pos), N_POS - 1)] = 1.0
    if mode is not None:
        x[MODE_COLUMNS[mode == "minor"]] = 1.0
    return x


def song_arrays(melody: np.ndarray, slot_pos: np.ndarray, steps_per_slot: int, frame: int,
                lookahead: bool, mode: str | None = None) -> np.ndarray:
    """(S, N_FEATURES) features of every slot of a melody (steps -> slots)."""
    n_slots = len(slot_pos)
    hists = [histogram(melody[s * steps_per_slot:(s + 1) * steps_per_slot], frame) for s in range(n_slots)]
    voiced = [s for s in range(n_slots) if hists[s].any()]
    last = voiced[-1] if voiced else -1
    zero = np.zeros(12, dtype=np.float32)
    rows = []
    for s in range(n_slots):
        onset = int(melody[s * steps_per_slot]) if s * steps_per_slot < len(melody) else -1
        prev = hists[s - 1] if s else zero
        if lookahead:
            rows.append(slot_vector(onset, prev, slot_pos[s], frame, hists[s],
                                    hists[s + 1] if s + 1 < n_slots else zero, s == last, mode))
        else:
            rows.append(slot_vector(onset, prev, slot_pos[s], frame, mode=mode))
    return np.stack(rows) if rows else np.zeros((0, N_FEATURES), dtype=np.float32)


def slot_chords(chords: np.ndarray, n_slots: int, steps_per_slot: int) -> np.ndarray:
    """The annotated chord at each slot: the one sounding longest in it (vocab.NO_CHORD if none)."""
    out = np.full(n_slots, vocab.NO_CHORD, dtype=np.int64)
    for s in range(n_slots):
        span = chords[s * steps_per_slot:(s + 1) * steps_per_slot]
        span = span[span >= 0]
        if len(span):
            values, counts = np.unique(span, return_counts=True)
            out[s] = values[np.argmax(counts)]
    return out
