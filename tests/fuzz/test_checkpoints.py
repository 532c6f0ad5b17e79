"""A damaged or crafted checkpoint (no code runs: weights_only) is one line and exit 2: its metadata and sizes
are checked before the model is built, so no traceback and no 50 GB allocation."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from hostile import fuzz, mutations, replaced
from hypothesis import given

from companion.cli import main
from companion.core.events import Note
from companion.files.midifile import write_take
from models.checkpoint import CheckpointFileError, save_checkpoint
from models.continuation.model import KIND, ContinuationModel
from models.tokenizer import Tokenizer, TokenizerConfig
from models.transformer import GPT, GPTConfig

TOKENIZER = TokenizerConfig().to_dict()
CONFIG = GPTConfig(vocab_size=len(Tokenizer(TokenizerConfig()).vocab), block_size=64, n_layer=1, n_head=2,
                   n_embd=16, dropout=0.0).__dict__


def write_melody(path: Path) -> Path:
    return write_take(path, [("melody", [Note(60 + 2 * i, 90, 480 * i, 480) for i in range(4)])], 120.0)


def tiny_checkpoint(path: Path, model_config: object = CONFIG, tokenizer_config: object = TOKENIZER,
                    nan: bool = False) -> Path:
    """A tiny continuation Transformer saved as `companion train transformer` does, then its metadata replaced."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**CONFIG, "n_extra": ()}))
    if nan:
        with torch.no_grad():
            next(model.parameters())[0, 0] = float("nan")
    save_checkpoint(path, model, kind=KIND, model_config=dict(CONFIG), tokenizer_config=TOKENIZER, data={},
                    metrics={})
    obj = torch.load(path, weights_only=True)
    obj["meta"] = replaced(replaced(obj["meta"], ("model_config",), model_config), ("tokenizer_config",),
                           tokenizer_config)
    torch.save(obj, path)
    return path


def test_the_tiny_checkpoint_loads(tmp_path: Path) -> None:
    model = ContinuationModel.load(tiny_checkpoint(tmp_path / "tiny.pt"), quantize=False)
    assert model.model.config.n_embd == 16


CRAFTED = {
    "no model_config": (dict(model_config=None), "has no model_config"),
    "no tokenizer_config": (dict(tokenizer_config=None), "has no tokenizer_config"),
    "a config that is a list": (dict(model_config=[1, 2]), "has no model_config"),
    "n_embd = 255": (dict(model_config={**CONFIG, "n_embd": 255}), "must be a multiple of n_head"),
    "n_embd as text": (dict(model_config={**CONFIG, "n_embd": "wide"}), "its model_config is damaged"),
    "a huge n_embd": (dict(model_config={**CONFIG, "n_embd": 2**20}), "describes a model of"),
    "a huge vocabulary": (dict(model_config={**CONFIG, "vocab_size": 10**9}), "describes a model of"),
    "a huge block_size": (dict(model_config={**CONFIG, "block_size": 10**10}), "describes a model of"),
    "a negative n_layer": (dict(model_config={**CONFIG, "n_layer": -3}), "does not fit"),
    "a config not fitting the weights": (dict(model_config={**CONFIG, "n_embd": 32}), "does not fit"),
    "a tokenizer of another vocabulary": (dict(tokenizer_config={**TOKENIZER, "velocity_bins": 3}), "tokens"),
    "a tokenizer config of wrong types": (dict(tokenizer_config={**TOKENIZER, "durations": 5}), "tokenizer_config"),
    "NaN weights": (dict(nan=True), "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_checkpoint_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     case: str) -> None:
    spec, words = CRAFTED[case]
    checkpoint = tiny_checkpoint(tmp_path / "bad.pt", **spec)
    source = write_melody(tmp_path / "in.mid")
    assert main(["generate", "continue", str(source), "-o", str(tmp_path / "out.mid"), "--checkpoint",
                 str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("companion: Checkpoint error: ") and err.count("\n") == 1 and words in err, err
    assert "Traceback" not in err and not (tmp_path / "out.mid").exists()


def test_a_preset_naming_a_file_that_is_no_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    preset = tmp_path / "p.toml"
    preset.write_text('[model]\ngenerator = "transformer"\ncheckpoint = "notes.txt"\n')
    source = write_melody(tmp_path / "in.mid")
    assert main(["generate", "continue", str(source), "-o", str(tmp_path / "out.mid"), "--preset", str(preset)]) == 2
    err = capsys.readouterr().err
    assert "Checkpoint error" in err and "notes.txt" in err and err.count("\n") == 1


@fuzz(30)
@given(meta=mutations({"model_config": CONFIG, "tokenizer_config": TOKENIZER}))
def test_fuzzed_checkpoint_metadata(meta: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = tiny_checkpoint(Path(folder) / "fuzzed.pt", meta.get("model_config"), meta.get("tokenizer_config"))
        try:
            ContinuationModel.load(path, quantize=False)
        except CheckpointFileError as err:
            assert str(err).startswith(f"checkpoint {path}")
