"""`companion train|eval vae`: the VaeTask objective through the real trainer, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from companion.cli import main
from models.checkpoint import save_checkpoint
from models.vae import PhraseVAENet, VAEConfig
from models.vae_data import notes_to_tokens, save_phrase_arrays
from models.vae_train import KIND, TOKENS_CONFIG

TINY = VAEConfig(n_embd=16, pos_embd=8, enc_hidden=24, enc_layers=1, dec_hidden=32, dec_layers=1, z_dim=8,
                 max_steps=32, dropout=0.0)

# a handful of 2-bar phrases (pitch, onset_step, duration_steps) on the 16th grid
PHRASES = [
    [(60 + p, 2 * i, 2) for i, p in enumerate((0, 2, 4, 5, 7, 5, 4, 2, 0, 4, 7, 12, 7, 4, 2, 0))],
    [(67, 0, 8), (69, 8, 1), (71, 9, 1), (72, 12, 12), (67, 28, 4)],
    [(64, 2 * i, 2) for i in range(8)] + [(62, 16, 16)],
    [(57, 0, 4), (60, 8, 4), (64, 16, 8), (69, 24, 8)],
    [(72 - p, 4 * i, 4) for i, p in enumerate((0, 1, 3, 5, 7, 8, 10, 12))],
]


def _arrays(splits: list[int]) -> dict[str, np.ndarray]:
    """Phrase arrays as --prepare writes them: one 2-bar piece per phrase, in the given splits (0/1/2)."""
    chunks = [notes_to_tokens(PHRASES[i % len(PHRASES)], 32) for i in range(len(splits))]
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
    return {"tokens": np.concatenate(chunks), "offsets": offsets,
            "bar_steps": np.full(len(chunks), 16, dtype=np.int32), "split": np.array(splits, dtype=np.int8),
            "ids": np.array([f"p{i}" for i in range(len(chunks))])}


@pytest.fixture
def phrase_data(tmp_path: Path) -> Path:
    path = tmp_path / "phrases.npz"
    save_phrase_arrays(path, _arrays([0, 0, 0, 0, 0, 1, 1, 2, 2]))
    return path


@pytest.fixture
def vae_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "vae.pt", PhraseVAENet(TINY), kind=KIND, model_config=TINY.to_dict(),
                           tokenizer_config=TOKENS_CONFIG, data={}, metrics={})


# --- bad files: one line naming the file, exit 2, no traceback ----------------------------------------------


def _file(d: Path, name: str, content: bytes) -> Path:
    (d / name).write_bytes(content)
    return d / name


def _foreign_checkpoint(d: Path) -> Path:
    """Another model's checkpoint (as models/checkpoints/harmonizer.pt is for the VAE)."""
    return save_checkpoint(d / "harmonizer.pt", PhraseVAENet(TINY), kind="harmonizer",
                           model_config={}, tokenizer_config={}, data={}, metrics={})


def _other_npz(d: Path) -> Path:
    np.savez(d / "other.npz", weights=np.zeros(3))
    return d / "other.npz"


@pytest.mark.parametrize("make, says", [
    (lambda d: d / "missing.pt", "does not exist"),
    (lambda d: _file(d, "corrupt.pt", b"\x80\x03not a checkpoint"), "corrupt"),
    (lambda d: _file(d, "empty.pt", b""), "corrupt"),
    (_foreign_checkpoint, "'harmonizer' model, not a 'phrase_vae' model"),
])
def test_eval_vae_with_a_bad_checkpoint_exits_2_naming_it(tmp_path: Path, phrase_data: Path, make, says: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = make(tmp_path)
    assert main(["eval", "vae", "--checkpoint", str(checkpoint), "--data", str(phrase_data)]) == 2
    err = capsys.readouterr().err
    assert str(checkpoint) in err and says in err and "Traceback" not in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("make, says", [
    (lambda d: _file(d, "notmidi.mid", b"hello, not MIDI"), "is not a phrase-array file"),
    (lambda d: d, "is a folder"),
    (lambda d: d / "nope.npz", "companion train vae --prepare"),
    (_other_npz, "lacks the arrays tokens"),
])
@pytest.mark.parametrize("command", ["eval", "train"])
def test_vae_commands_with_bad_phrase_data_exit_2_naming_it(tmp_path: Path, vae_checkpoint: Path, command: str,
                                                            make, says: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = make(tmp_path)
    extra = (["--checkpoint", str(vae_checkpoint)] if command == "eval" else
             ["--out", str(tmp_path / "run"), "--max-steps", "1", "--device", "cpu"])
    assert main([command, "vae", "--data", str(data), *extra]) == 2
    err = capsys.readouterr().err
    assert f"companion {command} vae: error: " in err and str(data) in err and says in err
    assert "Traceback" not in err


def test_train_vae_without_train_pieces_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "valid_only.npz"
    save_phrase_arrays(data, _arrays([1, 1, 2]))
    assert main(["train", "vae", "--data", str(data), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "no training windows" in err and "valid_only.npz" in err
