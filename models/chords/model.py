"""Loading the shipped chord model: the one loader, checkpoint -> numpy stepper (CLI entry points: cli.py)."""

from __future__ import annotations

from pathlib import Path

from models.checkpoint import CheckpointFileError, load_checkpoint
from models.chords.features import N_FEATURES
from models.chords.net import ChordConfig, ChordStepper
from models.chords.train import KIND, SHIPPED_CHECKPOINT


def load_stepper(path: Path | None = None) -> ChordStepper:
    """The chord model as a numpy stepper; CheckpointFileError naming the file if it is missing or broken."""
    path = Path(path) if path is not None else SHIPPED_CHECKPOINT
    state, meta = load_checkpoint(path, kind=KIND)
    config = ChordConfig.from_dict(meta["model_config"])
    if config.n_features != N_FEATURES:
        raise CheckpointFileError(f"{path}: a chord model for {config.n_features} input features, this version reads "
                                  f"{N_FEATURES}; train it again with `companion train harmony`")
    return ChordStepper(state, config)

