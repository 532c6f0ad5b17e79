"""Loading the shipped chord model: the one loader, checkpoint -> numpy stepper, without torch (the real-time
process plays it; CLI entry points: cli.py)."""

from __future__ import annotations

from pathlib import Path

from models.checkpoint_numpy import CheckpointFileError, load_arrays
from models.chords.features import N_FEATURES
from models.chords.stepper import ChordConfig, ChordStepper

KIND = "chords"
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "chords.pt"


def load_stepper(path: Path | None = None) -> ChordStepper:
    """The chord model as a numpy stepper; CheckpointFileError naming the file if it is missing or broken."""
    path = Path(path) if path is not None else SHIPPED_CHECKPOINT
    state, meta = load_arrays(path, kind=KIND)
    config = ChordConfig.from_dict(meta["model_config"])
    if config.n_features != N_FEATURES:
        raise CheckpointFileError(f"{path}: a chord model for {config.n_features} input features, this version reads "
                                  f"{N_FEATURES}; train it again with `companion train harmony`")
    try:
        return ChordStepper(state, config)
    except (KeyError, ValueError) as err:
        raise CheckpointFileError(f"checkpoint {path}: its weights do not fit a chord model ({err}); train it "
                                  "again with `companion train harmony`") from None
