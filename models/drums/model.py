"""A trained drum GAN ready to play: load a checkpoint, make bars from conditions (numpy in, numpy out)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.checkpoint import load_checkpoint, load_into
from models.drums.bars import PIECE_NOTES, PIECES, STEPS, STYLES
from models.drums.calibration import Calibration
from models.drums.gan import Conditions, DrumGANConfig, Generator, NumpyGenerator

KIND = "drum_gan"
SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "drums.pt"


@dataclass(frozen=True)
class GeneratedBars:
    """(B, P, S) arrays: hits 0/1, velocity 0..1, offset in steps."""

    hits: np.ndarray
    velocity: np.ndarray
    offset: np.ndarray


class DrumModel:
    """The generator of a checkpoint, in eval mode on the CPU, one thread's worth of work per call; its timing and
    velocities calibrated to the drummers' when the checkpoint carries a calibration (models/drums/calibration.py)."""

    def __init__(self, net: Generator, meta: dict[str, Any], path: Path, calibration: Calibration | None) -> None:
        self.net = net.eval()
        self.forward = NumpyGenerator(self.net)
        self.config = net.config
        self.meta = meta
        self.path = path
        self.calibration = calibration

    def generate(self, cond: Conditions, *, seed: int = 0, temperature: float = 1.0,
                 feel_seed: int | None = None) -> GeneratedBars:
        """One bar per row of ``cond``; the same seed and conditions give the same bars.

        ``feel_seed`` (a performance's: live, a session's drums; offline, a file's) makes the bars of one
        performance hold their looseness as a drummer does, each bar near the performance's own; without it
        every bar draws its own (the evaluation: each test bar stands for a drummer of its own)."""
        rng = np.random.default_rng(seed)
        c = cond.vector(self.config)
        z = rng.standard_normal((c.shape[0], self.config.z_dim), dtype=np.float32)
        logits, vel, off = self.forward(z, c)
        # Bernoulli hits, as models.drums.gan.sample_hits draws them in training
        probs = 0.5 + 0.5 * np.tanh(0.5 * logits / max(temperature, 1e-3))  # the sigmoid, never overflowing
        hits = (rng.random(probs.shape, dtype=np.float32) < probs).astype(np.float32)
        vel, off = vel * hits, off * hits
        if self.calibration is not None:
            looseness = _looseness(rng, len(hits), feel_seed)  # the quantile of the drummers' spread each bar takes
            vel, off = self.calibration.apply(np.asarray(cond.style, dtype=np.int64), np.asarray(cond.bpm), hits, vel,
                                             off, looseness)
        return GeneratedBars(hits, vel, off)


# Within one Groove performance a drummer's looseness stays near its own: the quantile of a bar's spread (at one
# tempo) varies with std 0.20 inside a train performance against 0.29 for uniform draws, the performances' means
# with std 0.21: about half of the variance is the performance's (a Gaussian copula with this correlation keeps
# every bar's draw uniform over performances).
PERFORMANCE_SHARE = 0.5


def _looseness(rng: np.random.Generator, count: int, feel_seed: int | None) -> np.ndarray:
    """Each bar's quantile of the drummers' timing spread: uniform; near its performance's own with ``feel_seed``."""
    if feel_seed is None:
        return rng.random(count)
    anchor = np.random.default_rng([feel_seed, 0x1005E]).standard_normal()
    z = np.sqrt(PERFORMANCE_SHARE) * anchor + np.sqrt(1.0 - PERFORMANCE_SHARE) * rng.standard_normal(count)
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def load_drum_model(path: str | os.PathLike[str] | None = None, *, calibrated: bool = True) -> DrumModel:
    """Load a drum GAN checkpoint (the shipped one by default), with its calibration unless ``calibrated`` is
    False (fitting one, or measuring what it does); CheckpointFileError names what is wrong."""
    from models.checkpoint import CheckpointFileError

    path = Path(path) if path is not None else SHIPPED
    state, meta = load_checkpoint(path, kind=KIND)
    layout = meta.get("tokenizer_config", {})
    if layout.get("steps") != STEPS or tuple(layout.get("pieces", ())) != PIECES or \
            tuple(layout.get("notes", ())) != PIECE_NOTES or tuple(layout.get("styles", ())) != STYLES:
        raise CheckpointFileError(f"checkpoint {path} was made for another bar layout; re-train it "
                                  "(companion train drums)")
    net = Generator(DrumGANConfig.from_dict(meta["model_config"]))
    load_into(net, state, path)
    calibration = None
    if calibrated and meta.get("extra", {}).get("calibration") is not None:
        try:
            calibration = Calibration.from_dict(meta["extra"]["calibration"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointFileError(f"checkpoint {path} has a damaged calibration ({err}); fit it again "
                                      "(python -m models.drums.calibrate)") from err
    return DrumModel(net, meta, path, calibration)
