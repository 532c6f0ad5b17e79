"""Checkpoint round trip (fp16 on disk, fp32 back, tied weights) and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.checkpoint import CheckpointFileError, load_checkpoint, load_into, save_checkpoint
from models.transformer import GPT, GPTConfig


def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0)).eval()


def _save(path: Path, model: GPT, kind: str = "harmonizer") -> None:
    save_checkpoint(path, model, kind=kind, model_config=model.config.to_dict(),
                    tokenizer_config={"pitches": [36, 81]}, data={"train": "jsb"},
                    metrics={"valid_nll": 0.5}, extra={"note": ("a", 1)})


def test_round_trip_restores_weights_and_meta(tmp_path: Path) -> None:
    model = _model()
    path = tmp_path / "m.pt"
    _save(path, model)
    state, meta = load_checkpoint(path, kind="harmonizer")
    assert meta["kind"] == "harmonizer" and meta["metrics"] == {"valid_nll": 0.5}
    assert meta["extra"] == {"note": ["a", 1]}
    assert all(t.dtype == torch.float32 for t in state.values())
    assert "lm_head.weight" not in state  # tied to wte.weight, stored once
    fresh = GPT(GPTConfig.from_dict(meta["model_config"])).eval()
    load_into(fresh, state, path)
    assert fresh.lm_head.weight.data_ptr() == fresh.wte.weight.data_ptr()
    idx = torch.randint(0, 11, (1, 8))
    a, _ = model(idx)
    b, _ = fresh(idx)
    assert torch.allclose(a, b, atol=2e-3)  # fp16 storage
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointFileError, match="nope.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt", kind="harmonizer")


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointFileError, match="bad.pt is not a checkpoint"):
        load_checkpoint(path, kind="harmonizer")
    good = tmp_path / "good.pt"
    _save(good, _model())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointFileError, match="truncated.pt"):
        load_checkpoint(truncated, kind="harmonizer")


def test_wrong_kind_and_version(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    _save(path, _model(), kind="transformer")
    with pytest.raises(CheckpointFileError, match="'transformer' model, not a 'harmonizer'"):
        load_checkpoint(path, kind="harmonizer")
    obj = torch.load(path, weights_only=True)
    obj["meta"]["format_version"] = 99
    torch.save(obj, path)
    with pytest.raises(CheckpointFileError, match="format version 99"):
        load_checkpoint(path, kind="transformer")


def test_mismatched_model_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    _save(path, _model())
    state, _ = load_checkpoint(path, kind="harmonizer")
    other = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16))
    with pytest.raises(CheckpointFileError, match="does not fit"):
        load_into(other, state, path)


def test_non_plain_metadata_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="plain types"):
        save_checkpoint(tmp_path / "m.pt", _model(), kind="x", model_config={"p": Path("x")},
                        tokenizer_config={}, data={}, metrics={})


def test_the_shapes_check_computes_nothing_on_the_meta_device() -> None:
    """`build_model` builds the model on the meta device first (a crafted config is refused before memory is
    taken); weight initialisation and the rotary tables are skipped there: the first meta computation of a
    process cost about 2 s of a 2.5 s cold load."""
    from torch.overrides import TorchFunctionMode

    from models.checkpoint import _NoInitOnMeta
    from models.transformer import GPT, GPTConfig

    called: list[str] = []

    class Spy(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            called.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    with torch.device("meta"), Spy(), _NoInitOnMeta():
        model = GPT(GPTConfig(vocab_size=50, block_size=64, n_layer=2, n_head=2, n_embd=32))
    computed = {"normal_", "uniform_", "zero_", "fill_", "arange", "outer", "cos", "sin", "pow", "__rpow__"}
    assert not computed & set(called), sorted(computed & set(called))
    assert model.rotary.cos.shape == (64, 8) and model.rotary.cos.is_meta
