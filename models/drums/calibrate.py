"""`python -m models.drums.calibrate --bars drum_bars.npz [--checkpoint PATH]`: fit the drum GAN's calibration
(models/drums/calibration.py) on the train split and store it in the checkpoint, in place."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from models.checkpoint import load_checkpoint, save_checkpoint
from models.drums.calibration import fit
from models.drums.evaluate import conditions
from models.drums.groove import BarSet
from models.drums.model import KIND, SHIPPED, load_drum_model


def fit_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m models.drums.calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bars", required=True, help="bar cache .npz (python -m models.drums.groove)")
    p.add_argument("--checkpoint", default=str(SHIPPED), help="the drum GAN checkpoint to calibrate, in place")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not Path(args.bars).is_file():
        print(f"calibration: {args.bars} not found; build it with python -m models.drums.groove", file=sys.stderr)
        return 2
    train = BarSet.load(args.bars).of_split("train")
    model = load_drum_model(args.checkpoint, calibrated=False)
    # the train bars' own conditions, half of them with the player's taps, as the drummer is asked live
    with_taps = np.arange(len(train)) % 2 == 1
    alone = model.generate(conditions(train, train, player=False, steer=True), seed=args.seed)
    tapped = model.generate(conditions(train, train, player=True, steer=True), seed=args.seed + 1)
    generated = tuple(np.where(with_taps[:, None, None], getattr(tapped, k), getattr(alone, k))
                      for k in ("hits", "velocity", "offset"))
    calibration = fit(train.style, train.bpm, (train.hits, train.velocity, train.offset), generated)
    state, meta = load_checkpoint(args.checkpoint, kind=KIND)
    extra = {**meta.get("extra", {}), "calibration": calibration.to_dict(),
             "calibration_fitted_on": f"train split, {len(train)} bars, seed {args.seed}"}
    save_checkpoint(args.checkpoint, state, kind=KIND, model_config=meta["model_config"],
                    tokenizer_config=meta["tokenizer_config"], data=meta["data"], metrics=meta["metrics"], extra=extra)
    print(f"calibrated {args.checkpoint} ({Path(args.checkpoint).stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(fit_main(sys.argv[1:]))
