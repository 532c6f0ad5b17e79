"""A checkpoint read without torch (the real-time process's way): the same weights and metadata as torch reads,
the same clear errors, and nothing but tensors and plain types may come out of the file."""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.checkpoint_numpy import CheckpointFileError, load_arrays
from models.transformer import GPT, GPTConfig

ROOT = Path(__file__).resolve().parents[2]


def _save(path: Path, kind: str = "harmonizer", half: bool = True, **extra_weights: torch.Tensor) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0)).eval()
    state = {**model.state_dict(), **extra_weights}
    save_checkpoint(path, state, kind=kind, model_config=model.config.to_dict(), tokenizer_config={"pitches": [36, 81]},
                    data={"train": "jsb"}, metrics={"valid_nll": 0.5}, extra={"note": ("a", 1)}, half=half)
    return model


@pytest.mark.parametrize("half", [True, False])
def test_the_arrays_are_the_weights_torch_reads(tmp_path: Path, half: bool) -> None:
    path = tmp_path / "m.pt"
    _save(path, half=half, steps=torch.arange(6).reshape(2, 3), mask=torch.tensor([True, False]),
          transposed=torch.arange(12.0).reshape(3, 4).t())
    arrays, meta = load_arrays(path, kind="harmonizer")
    tensors, torch_meta = load_checkpoint(path, kind="harmonizer")
    assert meta == torch_meta and set(arrays) == set(tensors)
    for name, tensor in tensors.items():
        assert arrays[name].dtype == tensor.numpy().dtype, name
        assert np.array_equal(arrays[name], tensor.numpy()), name
    assert arrays["transposed"][1, 2] == 9.0  # a tensor stored with strides comes back in its own order


def test_the_shipped_checkpoints_read_the_same_with_and_without_torch() -> None:
    for name, kind in (("chords.pt", "chords"), ("drums.pt", "drum_gan")):
        path = ROOT / "models" / "checkpoints" / name
        arrays, meta = load_arrays(path, kind=kind)
        tensors, torch_meta = load_checkpoint(path, kind=kind)
        assert meta == torch_meta
        assert all(np.array_equal(arrays[k], t.numpy()) for k, t in tensors.items()) and set(arrays) == set(tensors)


def test_bad_files_get_the_same_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointFileError, match="nope.pt does not exist"):
        load_arrays(tmp_path / "nope.pt", kind="harmonizer")
    midi = tmp_path / "song.pt"
    midi.write_bytes(b"MThd\x00\x00\x00\x06")
    with pytest.raises(CheckpointFileError, match="song.pt is a MIDI file"):
        load_arrays(midi, kind="harmonizer")
    good = tmp_path / "good.pt"
    _save(good, kind="transformer")
    with pytest.raises(CheckpointFileError, match="'transformer' model, not a 'harmonizer'"):
        load_arrays(good, kind="harmonizer")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointFileError, match="truncated.pt"):
        load_arrays(truncated, kind="transformer")
    nan = tmp_path / "nan.pt"
    _save(nan, bad=torch.tensor([1.0, float("nan")]))
    with pytest.raises(CheckpointFileError, match="'bad' holds NaN"):
        load_arrays(nan, kind="harmonizer")


class _Shell:
    def __reduce__(self) -> tuple:
        return (subprocess.call, (["true"],))


def test_a_file_that_names_anything_but_tensors_is_refused(tmp_path: Path) -> None:
    """A crafted checkpoint whose pickle would call a function: refused before anything runs."""
    path = tmp_path / "crafted.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("crafted/data.pkl", pickle.dumps({"meta": {}, "state_dict": {"w": _Shell()}}))
    with pytest.raises(CheckpointFileError, match="crafted.pt"):
        load_arrays(path, kind="harmonizer")


def test_the_lead_sheet_harmony_loads_in_a_process_without_torch() -> None:
    """The real-time process plays the chord model: loading and stepping it imports no torch."""
    code = ("import sys; from companion.harmony.chord_worker import load_chord_model; "
            "from models.chords.decode import LiveChords; import numpy as np; "
            "live = LiveChords(load_chord_model()); live.choose(64, 0, None, 0.3, np.ones(84, bool)); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
