"""Loading the shipped chord model: the one loader, checkpoint -> numpy stepper (and the offline reader, where
the checkpoint holds one), without torch (the real-time process plays it; CLI entry points: cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.checkpoint_numpy import CheckpointFileError, load_arrays
from models.chords.features import N_FEATURES
from models.chords.reader import ReaderConfig, SongReader
from models.chords.stepper import ChordConfig, ChordStepper

KIND = "chords"
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "chords.pt"


class ChordModel(ChordStepper):
    """The live stepper, and the whole-melody reader `decode.decode_offline` reads the melody with where the
    checkpoint holds one (else offline decoding reads the stepper with one slot of look-ahead)."""

    def __init__(self, state: dict[str, Any], config: ChordConfig, reader: SongReader | None) -> None:
        super().__init__(state, config)
        self.reader = reader


def load_stepper(path: Path | None = None) -> ChordModel:
    """The chord model as a numpy stepper; CheckpointFileError naming the file if it is missing or broken."""
    path = Path(path) if path is not None else SHIPPED_CHECKPOINT
    state, meta = load_arrays(path, kind=KIND)
    config = ChordConfig.from_dict(meta["model_config"])
    if config.n_features != N_FEATURES:
        raise CheckpointFileError(f"{path}: a chord model for {config.n_features} input features, this version reads "
                                  f"{N_FEATURES}; train it again with `companion train harmony`")
    try:
        reader = None
        if "reader" in meta["model_config"]:
            reader_config = ReaderConfig.from_dict(meta["model_config"]["reader"])
            reader = SongReader(state, reader_config, int(meta["model_config"].get("n_readers", 1)))
        return ChordModel(state, config, reader)
    except (KeyError, ValueError) as err:
        raise CheckpointFileError(f"checkpoint {path}: its weights do not fit a chord model ({err}); train it "
                                  "again with `companion train harmony`") from None
