"""The Groove MIDI Dataset (Gillick et al. 2019, CC BY 4.0) as bar arrays, cached in one .npz.

`python -m models.drums.groove --data ../shared/data/groove -o drum_bars.npz` reads every 4/4 performance once
(mido) and writes hits, velocities, offsets and per-bar labels (style, bpm, fill, split, drummer, file). Training
on the GPU machine then needs numpy only. Only 4/4 files are used (1,138 of 1,150); empty bars are dropped.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.drums.bars import NOTE_TO_PIECE, STEPS, STYLES, Bar, bars_from_hits, style_index

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class BarSet:
    """Bars as arrays (N, P, S) with their labels; `subset` picks rows."""

    hits: np.ndarray
    velocity: np.ndarray
    offset: np.ndarray
    style: np.ndarray  # (N,) index into STYLES
    bpm: np.ndarray  # (N,)
    fill: np.ndarray  # (N,) 1 for bars of a fill performance
    split: np.ndarray  # (N,) index into SPLITS
    drummer: np.ndarray  # (N,) 1..10
    source: np.ndarray  # (N,) row of info.csv

    def __len__(self) -> int:
        return len(self.style)

    def subset(self, mask: np.ndarray) -> BarSet:
        return BarSet(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})

    def of_split(self, name: str) -> BarSet:
        return self.subset(self.split == SPLITS.index(name))

    def save(self, path: Path) -> None:
        np.savez_compressed(path, hits=self.hits.astype(np.uint8), velocity=self.velocity.astype(np.float16),
                            offset=self.offset.astype(np.float16), style=self.style.astype(np.int8),
                            bpm=self.bpm.astype(np.float32), fill=self.fill.astype(np.uint8),
                            split=self.split.astype(np.int8), drummer=self.drummer.astype(np.int8),
                            source=self.source.astype(np.int16), styles=np.array(STYLES))

    @staticmethod
    def load(path: str | Path) -> BarSet:
        with np.load(path) as z:
            if tuple(str(s) for s in z["styles"]) != STYLES:
                raise ValueError(f"{path}: made with other style classes; rebuild it with models.drums.groove")
            return BarSet(hits=z["hits"].astype(np.float32), velocity=z["velocity"].astype(np.float32),
                          offset=z["offset"].astype(np.float32), style=z["style"].astype(np.int64),
                          bpm=z["bpm"].astype(np.float32), fill=z["fill"].astype(np.float32),
                          split=z["split"].astype(np.int64), drummer=z["drummer"].astype(np.int64),
                          source=z["source"].astype(np.int64))


def read_performance(path: Path) -> tuple[list[Bar], float]:
    """One drum MIDI file -> its bars (from tick 0, the file's own click) and its tempo in BPM."""
    import mido  # here, so that training on a machine without mido needs only the .npz

    mid = mido.MidiFile(path)
    step_ticks = mid.ticks_per_beat / 4
    tempo_us = None
    hits: list[tuple[float, int, int]] = []
    for track in mid.tracks:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "set_tempo" and tempo_us is None:
                tempo_us = msg.tempo
            elif msg.type == "note_on" and msg.velocity > 0 and msg.note in NOTE_TO_PIECE:
                hits.append((now / step_ticks, NOTE_TO_PIECE[msg.note], msg.velocity))
    total = int(max((t for t, _, _ in hits), default=0)) + 1
    return bars_from_hits(hits, total), mido.tempo2bpm(tempo_us or 500_000)


def build(root: Path) -> BarSet:
    """Every 4/4 performance listed in root/info.csv, as non-empty bars."""
    rows = list(csv.DictReader((root / "info.csv").open()))
    cols: dict[str, list] = {k: [] for k in BarSet.__dataclass_fields__}
    for i, row in enumerate(rows):
        if row["time_signature"] != "4-4":
            continue
        bars, bpm = read_performance(root / row["midi_filename"])
        for bar in bars:
            if bar.hits.sum() == 0:
                continue
            cols["hits"].append(bar.hits)
            cols["velocity"].append(bar.velocity)
            cols["offset"].append(bar.offset)
            cols["style"].append(style_index(row["style"]))
            cols["bpm"].append(float(row["bpm"]) if row["bpm"] else bpm)
            cols["fill"].append(1.0 if row["beat_type"] == "fill" else 0.0)
            cols["split"].append(SPLITS.index(row["split"]))
            cols["drummer"].append(int(row["drummer"].removeprefix("drummer")))
            cols["source"].append(i)
    return BarSet(**{k: np.asarray(v) for k, v in cols.items()})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.drums.groove", description=__doc__)
    p.add_argument("--data", default="../shared/data/groove", help="the Groove MIDI Dataset folder (info.csv)")
    p.add_argument("-o", "--output", default="drum_bars.npz")
    args = p.parse_args(argv)
    root = Path(args.data)
    if not (root / "info.csv").is_file():
        print(f"groove: {root}/info.csv not found; give --data the Groove MIDI Dataset folder", file=sys.stderr)
        return 2
    bars = build(root)
    bars.save(Path(args.output))
    counts = {s: int((bars.split == i).sum()) for i, s in enumerate(SPLITS)}
    print(f"{len(bars)} bars {counts} -> {args.output} ({STEPS} steps, styles {STYLES})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
