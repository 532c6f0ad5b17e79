"""`companion eval harmony`: the chord model and the rule baseline against the held-out songs' annotations.

Every measure is per 16th step (as in issue 12's table) over the steps where the annotation has a chord and
the melody has begun, averaged per song; the JSON gives each system's mean, its spread over songs (sd) and a
95% interval of the mean, and the paired difference model - rule with a 95% bootstrap interval over songs
(BOOTSTRAP resamples, seeded: the same figures on every run).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.chords import vocab
from models.chords.data import DATA_ROOT, SOURCES, Song
from models.chords.decode import CADENCES, CHANGE_EVERY, decode_live, decode_offline, rule_chords
from models.chords.features import ending_key, phrase_ends, slot_chords
from models.chords.jsb_labels import JSB_FILE, build_jsb_songs
from models.chords.model import SHIPPED_CHECKPOINT
from models.chords.train import DEFAULT_CACHE, is_valid, songs_from

METRICS = ("root_acc", "chord_acc", "jaccard", "bass_root", "melody_in_chord", "clash", "ends_on_tonic",
           "ends_on_song_tonic", "phrase_ends_on_tonic", "cadences_kept",
           "changes_per_bar", "annotation_changes_per_bar")
BOOTSTRAP = 2000
_PCS = [frozenset(vocab.chord_pcs(i)) for i in range(vocab.N_CHORDS)]
_MASKS = np.array([[pc in pcs for pc in range(12)] for pcs in _PCS])  # (C, 12)


def tonic_chord(chord: int, key: tuple[int, str]) -> bool:
    """The key's tonic chord (a seventh or sus on it counts; a diminished one does not)."""
    return chord >= 0 and vocab.root_of(chord) == key[0] and vocab.quality_of(chord) != "dim"


def song_metrics(song: Song, slot_chords: np.ndarray) -> dict[str, float] | None:
    """The measures for one song harmonized with one chord per slot (absolute classes; the bass is the root)."""
    steps = np.repeat(slot_chords, song.steps_per_slot)[:len(song.melody)]
    n = len(steps)
    truth = song.chords[:n].astype(np.int64)
    melody = song.melody[:n].astype(np.int64)
    started = np.arange(n) >= int(np.argmax(song.onset))
    judged = (truth >= 0) & started
    if judged.sum() < 16:
        return None
    pred, ann = steps[judged], truth[judged]
    inter = (_MASKS[pred] & _MASKS[ann]).sum(1)
    union = (_MASKS[pred] | _MASKS[ann]).sum(1)
    sounding = judged & (melody >= 0)
    pcs = melody[sounding] % 12
    chord_masks = _MASKS[steps[sounding]]
    in_chord = chord_masks[np.arange(len(pcs)), pcs]
    rub = chord_masks[np.arange(len(pcs)), (pcs + 1) % 12] | chord_masks[np.arange(len(pcs)), (pcs - 1) % 12]
    last = int(np.nonzero(melody >= 0)[0][-1])
    slot_pos = song.slot_pos[:len(slot_chords)]
    end_key = ending_key(song.melody, song.slot_pos, song.steps_per_slot)  # the key the tune ends in
    bars = max(1, int((slot_pos == 0).sum()))
    ann_slots = np.array([truth[min(s * song.steps_per_slot, n - 1)] for s in range(len(slot_chords))])
    ends = [e for e in phrase_ends(song.melody, song.slot_pos, song.steps_per_slot, song.onset) if e < n]
    ends_key = [end_key if e == ends[-1] else song.key for e in ends]  # the song's key; its end's for the last
    ours_tonic = [tonic_chord(int(steps[e]), k) for e, k in zip(ends, ends_key, strict=True)]
    real_tonic = [tonic_chord(int(truth[e]), k) for e, k in zip(ends, ends_key, strict=True)]
    kept = [o for o, r in zip(ours_tonic, real_tonic, strict=True) if r]
    return {
        "root_acc": float(np.mean(pred // vocab.N_QUALITIES == ann // vocab.N_QUALITIES)),
        "chord_acc": float(np.mean(pred == ann)),
        "jaccard": float(np.mean(inter / union)),
        "bass_root": float(np.mean(pred // vocab.N_QUALITIES == ann // vocab.N_QUALITIES)),
        "melody_in_chord": float(np.mean(in_chord)) if len(pcs) else float("nan"),
        "clash": float(np.mean(rub & ~in_chord)) if len(pcs) else float("nan"),
        "ends_on_tonic": float(tonic_chord(int(steps[last]), end_key)),
        "ends_on_song_tonic": float(tonic_chord(int(steps[last]), song.key)),
        "annotation_ends_on_tonic": float(tonic_chord(int(truth[last]), end_key)),
        "phrase_ends_on_tonic": float(np.mean(ours_tonic)) if ends else float("nan"),
        "annotation_phrase_ends_on_tonic": float(np.mean(real_tonic)) if ends else float("nan"),
        "cadences_kept": float(np.mean(kept)) if kept else float("nan"),
        "changes_per_bar": float(np.sum(slot_chords[1:] != slot_chords[:-1]) / bars),
        "annotation_changes_per_bar": float(np.sum((ann_slots[1:] != ann_slots[:-1]) & (ann_slots[1:] >= 0)) / bars),
    }


def summarize(per_song: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for name in per_song[0]:
        values = np.array([m[name] for m in per_song], dtype=float)
        values = values[np.isfinite(values)]
        if not len(values):  # no song had one (no cadence in the annotations, say)
            out[name] = {"mean": float("nan"), "sd": float("nan"), "ci95": float("nan")}
            continue
        sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[name] = {"mean": round(float(values.mean()), 4), "sd": round(sd, 4),
                     "ci95": round(1.96 * sd / np.sqrt(max(1, len(values))), 4)}
    return out


def paired(a: list[dict[str, float]], b: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per-song difference a - b: mean, a 95% interval (normal approximation, ci95 = its half width) and the
    2.5 and 97.5 percentiles of the mean over BOOTSTRAP resamples of the songs (boot_lo, boot_hi)."""
    out = {}
    rng = np.random.default_rng(0)
    for name in ("root_acc", "chord_acc", "jaccard", "bass_root", "melody_in_chord", "clash", "ends_on_tonic"):
        d = np.array([x[name] - y[name] for x, y in zip(a, b, strict=True)], dtype=float)
        d = d[np.isfinite(d)]
        half = 1.96 * float(d.std(ddof=1)) / np.sqrt(len(d)) if len(d) > 1 else 0.0
        means = d[rng.integers(0, len(d), (BOOTSTRAP, len(d)))].mean(axis=1) if len(d) else np.zeros(1)
        out[name] = {"mean": round(float(d.mean()), 4), "ci95": round(half, 4),
                     "boot_lo": round(float(np.percentile(means, 2.5)), 4),
                     "boot_hi": round(float(np.percentile(means, 97.5)), 4)}
    return out


Harmonizer = Callable[[Song], np.ndarray]


def evaluate(songs: list[Song], systems: dict[str, Harmonizer]) -> dict[str, Any]:
    """Each system over the songs: summaries, and the difference of each to `rule` (if given)."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
    for song in songs:
        scored = {name: song_metrics(song, harmonize(song)) for name, harmonize in systems.items()}
        if any(m is None for m in scored.values()):
            continue
        for name, m in scored.items():
            results[name].append(m)  # type: ignore[arg-type]
    out: dict[str, Any] = {"songs": len(results[next(iter(systems))])}
    for name, per_song in results.items():
        out[name] = summarize(per_song) if per_song else {}
    if "rule" in results and results["rule"]:
        out["vs_rule"] = {name: paired(per_song, results["rule"]) for name, per_song in results.items()
                          if name != "rule"}
    return out


def _remembered(systems: dict[str, Harmonizer]) -> dict[str, Harmonizer]:
    """The systems, each harmonizing a song once however many reports score it."""
    done: dict[tuple[str, str, str], np.ndarray] = {}

    def remember(name: str, harmonize: Harmonizer) -> Harmonizer:
        def run(song: Song) -> np.ndarray:
            key = (name, song.source, song.song_id)
            if key not in done:
                done[key] = harmonize(song)
            return done[key]
        return run
    return {name: remember(name, harmonize) for name, harmonize in systems.items()}


def eval_main(argv: list[str]) -> int:
    """`companion eval harmony [--split folk|test|all] [--change-every ...]`: prints JSON."""
    p = argparse.ArgumentParser(prog="companion eval harmony", description=__doc__)
    p.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT))
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="folder of the songs caches (built on first use)")
    p.add_argument("--split", default="all", choices=["folk", "test", "all", "valid", "jsb-valid"],
                   help="folk: the folk set; test: held-out POP909 and OpenEWLD songs; all: both, reported apart; "
                        "valid: the training songs kept for choosing settings (never the held-out ones); "
                        "jsb-valid: the JSB benchmark's valid chorales (a chord per beat from the four voices)")
    p.add_argument("--change-every", default="beat", choices=CHANGE_EVERY, help="the model's harmonic rhythm")
    p.add_argument("--cadences", default="home", choices=CADENCES,
                   help="offline: home closes every phrase on the tonic; melody only those ending on its root or third")
    p.add_argument("--limit", type=int, default=None, help="at most this many songs per set")
    args = p.parse_args(argv)
    from models.checkpoint import CheckpointFileError
    from models.chords.model import load_stepper

    try:
        stepper = load_stepper(Path(args.checkpoint))
    except CheckpointFileError as err:
        print(f"companion eval harmony: {err}; train one with `companion train harmony`", file=sys.stderr)
        return 2
    jsb = DATA_ROOT / JSB_FILE
    if args.split == "jsb-valid" and not jsb.is_file():
        print(f"companion eval harmony: {jsb} is missing; --split jsb-valid reads the JSB benchmark there",
              file=sys.stderr)
        return 2
    songs = songs_from(Path(args.cache))
    every = args.change_every
    systems = _remembered({
        "annotation": lambda s: np.maximum(slot_chords(s.chords, len(s.slot_pos), s.steps_per_slot), 0),
        "rule": lambda s: rule_chords(s.melody, s.slot_pos, s.steps_per_slot, s.key, "bar"),
        "model_offline": lambda s: decode_offline(stepper, s.melody, s.slot_pos, s.steps_per_slot, s.key, every,
                                                  args.cadences),
        "model_live": lambda s: decode_live(stepper, s.melody, s.slot_pos, s.steps_per_slot, s.key, every),
    })
    report: dict[str, Any] = {"checkpoint": args.checkpoint, "change_every": every, "cadences": args.cadences,
                              "unit": "per 16th step with an annotated chord, mean over songs"}
    sets = {"folk": ["folk"], "test": ["test"], "all": ["folk", "test"], "valid": ["valid"],
            "jsb-valid": ["jsb_valid"]}[args.split]
    every_song: list[Song] = []
    for name in sets:
        if name == "valid":
            chosen = [s for s in songs if s.split == "train" and is_valid(s.song_id)]
        elif name == "jsb_valid":
            chosen = build_jsb_songs(DATA_ROOT, "valid")[0]
        else:
            chosen = [s for s in songs if s.split == name]
        if name in ("test", "valid"):
            for source in SOURCES:
                part = [s for s in chosen if s.source == source][:args.limit]
                report[f"{name}_{source}"] = evaluate(part, systems)
                every_song += part
        else:
            report[name] = evaluate(chosen[:args.limit], systems)
            every_song += chosen[:args.limit]
    if len(sets) > 1:  # every held-out song at once: the paired intervals over all of them
        report["held_out_all"] = evaluate(every_song, systems)
    print(json.dumps(report, indent=1))
    return 0
