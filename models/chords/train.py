"""Training the chord model: `companion train harmony` (the TrainTask for models.trainer)."""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.checkpoint import load_checkpoint, save_checkpoint
from models.chords import vocab
from models.chords.data import (
    CACHE_VERSION,
    DATA_ROOT,
    HELD_OUT_PERCENT,
    SOURCES,
    TRAIN_ONLY,
    Song,
    build_songs,
    load_songs,
    save_songs,
)
from models.chords.features import MODE_COLUMNS, NO_PREV, frame_of, slot_chords, song_arrays
from models.chords.folk_melodies import SOURCE as FOLK_SOURCE
from models.chords.folk_melodies import build_folk_melody_songs
from models.chords.jsb_labels import SOURCE as JSB_SOURCE
from models.chords.jsb_labels import build_jsb_songs
from models.chords.model import KIND, SHIPPED_CHECKPOINT
from models.chords.net import ChordNet, ReaderNet
from models.chords.reader import PREFIX, ReaderConfig
from models.chords.stepper import ChordConfig
from models.trainer import TrainConfig, finish_run, train

DEFAULT_CACHE = Path.home() / ".cache" / "companion"
VALID_PERCENT = 5  # of the training songs, for choosing the best step (the held-out songs are never seen)
WINDOW_SLOTS = 64
FRAME_SLIP = 0.15  # share of windows read in a frame a fifth off (a key estimate that missed by a fifth)
BLIND = 1.0  # share of windows without the previous chords: every decoder reads the melody alone (decode.py)
MODE_UNKNOWN = 0.3  # share of windows read without the key's mode (live, only the key's scale may be known)
PC_BLOCKS = ((0, 12), (13, 25), (25, 37), (37, 49))  # feature columns holding pitch classes
READER_KIND = "chords-reader"  # one trained reader, before merge_readers puts it into a chord checkpoint
READER_WINDOW_SLOTS = 128  # the reader's training windows: long enough to hear a few phrases both ways


def songs_from(cache: Path, rebuild: bool = False, with_jsb: bool = False, with_folk: bool = False) -> list[Song]:
    """The chord-annotated songs, from the cache folder (each source read from ../shared/data the first time:
    a few minutes for POP909's MIDI files); `with_jsb`: and the JSB train chorales (jsb_labels.py);
    `with_folk`: and the corpus's folk tunes labelled by the shipped checkpoint (folk_melodies.py)."""
    songs: list[Song] = []
    for source in SOURCES + ((JSB_SOURCE,) if with_jsb else ()) + ((FOLK_SOURCE,) if with_folk else ()):
        path = cache / f"chord-songs-{source}-v{CACHE_VERSION}.npz"
        if path.is_file() and not rebuild:
            songs.extend(load_songs(path))
            continue
        if source == FOLK_SOURCE:  # never one of the songs that choose or judge (valid, held out)
            kept_out = [s for s in songs if s.split != "train" or is_valid(s.song_id)]
            built, report = build_folk_melody_songs(SHIPPED_CHECKPOINT, kept_out)
        else:
            built, report = build_jsb_songs(DATA_ROOT) if source == JSB_SOURCE else build_songs(source, DATA_ROOT)
        save_songs(path, built)
        print(json.dumps({"built": str(path), **report}), file=sys.stderr)
        songs.extend(built)
    return songs


def is_valid(song_id: str) -> bool:
    """A training song kept for choosing the step and settings (never one of the extra training sources: valid
    stays as it was)."""
    if song_id.split("/")[0] in TRAIN_ONLY:
        return False
    return int.from_bytes(hashlib.sha1(("valid:" + song_id).encode()).digest()[:8], "big") % 100 < VALID_PERCENT


def rotate(x: np.ndarray, frame: int) -> np.ndarray:
    """Features read in frame 0 -> the same read in `frame` (each pitch-class block rolled)."""
    out = x.copy()
    for a, b in PC_BLOCKS:
        out[..., a:b] = np.roll(x[..., a:b], -frame, axis=-1)
    return out


def to_frame(chords: np.ndarray, frame: int) -> np.ndarray:
    roots, qualities = chords // vocab.N_QUALITIES, chords % vocab.N_QUALITIES
    return np.where(chords >= 0, ((roots - frame) % 12) * vocab.N_QUALITIES + qualities, chords)


class _Prepared:
    """One song's slot arrays in frame 0 (absolute): live and lookahead features, target chords."""

    def __init__(self, song: Song) -> None:
        self.song_id = song.song_id
        n_slots = len(song.slot_pos)
        mode = song.key[1]
        self.live = song_arrays(song.melody, song.slot_pos, song.steps_per_slot, 0, lookahead=False, mode=mode)
        self.look = song_arrays(song.melody, song.slot_pos, song.steps_per_slot, 0, lookahead=True, mode=mode)
        self.target = slot_chords(song.chords, n_slots, song.steps_per_slot)
        self.frame = frame_of(song.key)


def _window(p: _Prepared, start: int, length: int, lookahead: bool, slip: int,
            blind: bool = False, modeless: bool = False) -> tuple[np.ndarray, ...]:
    """One training window; `blind`: the previous chords are not given (the model hears the melody only);
    `modeless`: nor the key's mode."""
    frame = (p.frame + slip) % 12
    x = rotate((p.look if lookahead else p.live)[start:start + length], frame)
    if modeless:
        x[:, list(MODE_COLUMNS)] = 0.0
    target = to_frame(p.target[start:start + length], frame)
    prev = np.concatenate([[to_frame(p.target[start - 1:start], frame)[0] if start else -1], target[:-1]])
    prev = np.where((prev >= 0) & (not blind), prev, NO_PREV)
    return x, prev, np.where(target >= 0, target, -1)


def _batch(rows: list[tuple[np.ndarray, ...]], length: int) -> tuple[torch.Tensor, ...]:
    """Windows padded to `length`: features, previous chords, targets (-1: none) and each window's length."""
    b = len(rows)
    x = np.zeros((b, length, rows[0][0].shape[1]), dtype=np.float32)
    prev = np.full((b, length), NO_PREV, dtype=np.int64)
    tgt = np.full((b, length), -1, dtype=np.int64)
    for i, (xi, pi, ti) in enumerate(rows):
        n = len(xi)
        x[i, :n], prev[i, :n], tgt[i, :n] = xi, pi, ti
    lengths = torch.tensor([max(1, len(r[0])) for r in rows], dtype=torch.int64)
    return torch.from_numpy(x), torch.from_numpy(prev), torch.from_numpy(tgt), lengths


class ChordTask:
    """Windows of WINDOW_SLOTS slots from the training songs; half read live (no lookahead), half offline. With
    a `reader` config it trains the offline reader instead: every window read offline, with the key's mode."""

    def __init__(self, songs: list[Song], config: ChordConfig, command: str, balance: bool = False,
                 reader: ReaderConfig | None = None, window: int = WINDOW_SLOTS, folk_share: float = 0.0) -> None:
        train_songs = [s for s in songs if s.split == "train" and not is_valid(s.song_id)]
        self.train = [_Prepared(s) for s in train_songs]
        # `balance`: a window's source is drawn first (each as likely), then a song of it; the labelled folk
        # tunes (if any) are drawn `folk_share` of the time, whatever else
        folk = [i for i, s in enumerate(train_songs) if s.source == FOLK_SOURCE]
        rest = [i for i, s in enumerate(train_songs) if s.source != FOLK_SOURCE]
        by_source = [[i for i in rest if train_songs[i].source == src] for src in SOURCES]
        self.pools = [pool for pool in by_source if pool] if balance else [rest]
        self.pool_weights = [1.0 / len(self.pools)] * len(self.pools)
        if folk:
            self.pools.append(folk)
            self.pool_weights = [w * (1.0 - folk_share) for w in self.pool_weights] + [folk_share]
        self.valid = [_Prepared(s) for s in songs if s.split == "train" and is_valid(s.song_id)]
        self.config, self.command, self.reader, self.window = config, command, reader, window
        self.counts = {src: sum(s.source == src and s.split == "train" for s in songs) for src in SOURCES}
        self.held_out = sorted(s.song_id for s in songs if s.split != "train")

    def build_model(self) -> nn.Module:
        return ChordNet(self.config) if self.reader is None else ReaderNet(self.reader)

    def train_batch(self, step: int, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator)))
        rows = []
        for _ in range(batch_size):
            pool = self.pools[int(rng.choice(len(self.pools), p=self.pool_weights))] if len(self.pools) > 1 \
                else self.pools[0]
            p = self.train[pool[int(rng.integers(len(pool)))]]
            extra = len(p.target) - self.window
            start = int(rng.integers(extra + 1)) if extra > 0 else 0
            slip = int(rng.choice((5, 7))) if rng.random() < FRAME_SLIP else 0
            offline = self.reader is not None
            rows.append(_window(p, start, self.window, offline or bool(rng.random() < 0.5), slip,
                                bool(rng.random() < BLIND), not offline and bool(rng.random() < MODE_UNKNOWN)))
        return _batch(rows, self.window)

    def _logits(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, prev, _, lengths = batch
        return model(x, prev) if self.reader is None else model(x, lengths)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        tgt = batch[2]
        logits = self._logits(model, batch)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1), ignore_index=-1)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        model.eval()
        total, count, hits = 0.0, 0, 0
        readings = ((False, True), (True, True)) if self.reader is None else ((True, True),)  # live, offline
        for lookahead, blind in readings:
            for p in self.valid:
                window = _window(p, 0, len(p.target), lookahead, 0, blind, modeless=not lookahead)
                batch = tuple(t.to(device) for t in _batch([window], len(p.target)))
                tgt = batch[2]
                logits = self._logits(model, batch)
                mask = tgt >= 0
                total += float(nn.functional.cross_entropy(logits[mask], tgt[mask], reduction="sum"))
                count += int(mask.sum())
                hits += int((logits.argmax(-1)[mask] == tgt[mask]).sum())
        model.train()
        return {"valid_loss": total / max(1, count), "valid_chord_acc_teacher_forced": hits / max(1, count)}

    def save_best(self, path: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        if self.reader is not None:  # one reader alone; merge_readers puts it into a chord checkpoint
            save_checkpoint(path, model, kind=READER_KIND, model_config=self.reader.to_dict(), tokenizer_config={},
                            data={"held_out_songs": self.held_out}, metrics=metrics,
                            extra={"train_command": self.command}, half=False)
            return
        data = {"sources": "POP909 (MIDI melody + automatic chord labels, songs whose labels fit their piano part); "
                           "OpenEWLD lead sheets (MusicXML chord symbols)",
                "train_songs": self.counts, "valid_songs": len(self.valid),
                "held_out": f"{HELD_OUT_PERCENT}% of POP909 and of OpenEWLD by a hash of the song id, and every "
                            "traditional song of OpenEWLD plus the music21 corpus's Nottingham tunes (the folk set)",
                "held_out_songs": self.held_out,
                "augmentation": f"the key frame a fifth off in {FRAME_SLIP:.0%} of windows, the mode left out in "
                                f"{MODE_UNKNOWN:.0%}; transposition-free "
                                "by construction (the melody is read relative to the key's major frame)"}
        tok = {"qualities": [q for q, _ in vocab.QUALITIES], "n_chords": vocab.N_CHORDS, "slot": "beat"}
        save_checkpoint(path, model, kind=KIND, model_config=self.config.to_dict(), tokenizer_config=tok, data=data,
                        metrics=metrics, extra={"train_command": self.command}, half=False)


def merge_readers(base: Path, readers: list[Path], out: Path, command: str) -> None:
    """A chord checkpoint holding `base`'s live model and the readers (an ensemble, PREFIX<i>.*), for
    decode_offline; the readers must hold out what the live model held out."""
    state, meta = load_checkpoint(base, kind=KIND)
    state = {k: v for k, v in state.items() if not k.startswith(PREFIX)}
    metrics, commands = [], []
    for i, path in enumerate(readers):
        reader_state, reader_meta = load_checkpoint(path, kind=READER_KIND)
        if sorted(reader_meta["data"]["held_out_songs"]) != sorted(meta["data"]["held_out_songs"]):
            raise ValueError(f"{path} held out other songs than {base}")
        state.update({f"{PREFIX}{i}.{k}": v for k, v in reader_state.items()})
        metrics.append(reader_meta["metrics"])
        commands.append(reader_meta["extra"]["train_command"])
    model_config = {**meta["model_config"], "reader": reader_meta["model_config"], "n_readers": len(readers)}
    data = {**meta["data"], "reader": f"{len(readers)} bidirectional readers (seeds), every window read offline, "
                                      "on the live model's training songs"}
    extra = {**meta.get("extra", {}), "reader_train_command": command, "reader_runs": commands}
    save_checkpoint(out, state, kind=KIND, model_config=model_config, tokenizer_config=meta["tokenizer_config"],
                    data=data, metrics={**meta["metrics"], "readers": metrics}, extra=extra, half=False)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="companion train harmony", description="Train the lead-sheet chord model.")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="folder of the songs caches (built on first use)")
    p.add_argument("--rebuild", action="store_true", help="read the sources again")
    p.add_argument("--out", default="runs/chords", help="run folder (best.pt, last.pt, loss.png, log)")
    p.add_argument("--checkpoint", default=None, help="copy the best checkpoint here at the end")
    p.add_argument("--n-hidden", type=int, default=128)
    p.add_argument("--n-embd", type=int, default=32)
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--balance-sources", action="store_true",
                   help="draw POP909 and OpenEWLD windows equally often (else in proportion to their songs)")
    p.add_argument("--reader", action="store_true",
                   help="train the offline reader (a bidirectional GRU, `--n-readers` seeds) and write it with "
                        "the live model of --base into one checkpoint")
    p.add_argument("--base", default=str(SHIPPED_CHECKPOINT), help="--reader: the checkpoint whose live model is kept")
    p.add_argument("--n-readers", type=int, default=1, help="--reader: an ensemble of this many seeds")
    p.add_argument("--n-layer", type=int, default=2, help="--reader: GRU layers")
    p.add_argument("--dropout", type=float, default=0.2, help="--reader: dropout")
    p.add_argument("--with-jsb", action="store_true",
                   help="also train on the JSB train chorales (soprano + a chord per beat from the four voices)")
    p.add_argument("--with-folk-melodies", action="store_true",
                   help="also train on the music21 corpus's folk tunes, labelled by the shipped checkpoint")
    p.add_argument("--folk-share", type=float, default=0.25,
                   help="--with-folk-melodies: the share of training windows drawn from those tunes")
    p.add_argument("--window", type=int, default=None,
                   help=f"training window in slots (default {WINDOW_SLOTS}, {READER_WINDOW_SLOTS} for --reader)")
    return p


def train_main(argv: list[str]) -> int:
    """`companion train harmony ...`: returns a process exit code."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    songs = songs_from(Path(args.cache), args.rebuild, args.with_jsb, args.with_folk_melodies)
    config = ChordConfig(n_hidden=args.n_hidden, n_embd=args.n_embd)
    command = "companion train harmony " + shlex.join(argv)
    reader = ReaderConfig(n_hidden=args.n_hidden, n_layer=args.n_layer, dropout=args.dropout) if args.reader else None
    window = args.window or (READER_WINDOW_SLOTS if args.reader else WINDOW_SLOTS)
    task = ChordTask(songs, config, command, args.balance_sources, reader, window, args.folk_share)

    def run(out_dir: str, seed: int) -> dict[str, Any]:
        tcfg = TrainConfig(out_dir=out_dir, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                           min_lr=args.lr / 20, warmup_steps=100, weight_decay=0.01, eval_every=args.eval_every,
                           log_every=100, seed=seed, device=args.device, amp=False)  # small GRUs: fp32
        return train(task, tcfg)

    if reader is None:
        return finish_run(args.out, args.checkpoint, run(args.out, args.seed))
    runs = [Path(args.out) / f"reader-{i}" for i in range(args.n_readers)]
    results = [run(str(path), args.seed + i) for i, path in enumerate(runs)]
    merge_readers(Path(args.base), [path / "best.pt" for path in runs], Path(args.out) / "best.pt", command)
    return finish_run(args.out, args.checkpoint, {"readers": results})
