"""The offline reader (a bidirectional GRU over the whole melody): numpy against torch, its place in a chord
checkpoint beside the live model, and offline decoding reading the melody with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.checkpoint_numpy import MAX_FILE_BYTES
from models.chords import vocab
from models.chords.decode import chord_log_probs, decode_offline
from models.chords.features import N_FEATURES, song_arrays
from models.chords.model import KIND, SHIPPED_CHECKPOINT, ChordModel, load_stepper
from models.chords.net import ChordNet, ReaderNet
from models.chords.reader import PREFIX, ReaderConfig, SongReader
from models.chords.stepper import ChordConfig
from models.chords.train import READER_KIND, merge_readers


def _reader_net(seed: int, n_layer: int = 2) -> ReaderNet:
    torch.manual_seed(seed)
    return ReaderNet(ReaderConfig(n_hidden=12, n_layer=n_layer)).eval()


@pytest.mark.parametrize("n_layer", [1, 2])
def test_the_numpy_reader_matches_the_torch_network(n_layer: int) -> None:
    net = _reader_net(0, n_layer)
    x = torch.randn(1, 9, N_FEATURES)
    with torch.no_grad():
        want = torch.log_softmax(net(x), -1)[0].numpy()
        padded = torch.cat([x, torch.zeros(1, 4, N_FEATURES)], dim=1)  # a short window in a padded batch
        packed = torch.log_softmax(net(padded, torch.tensor([9])), -1)[0, :9].numpy()
    reader = SongReader({PREFIX + "0." + k: v for k, v in net.state_dict().items()}, net.config, 1)
    np.testing.assert_allclose(reader.log_probs(x[0].numpy()), want, atol=1e-4)
    np.testing.assert_allclose(packed, want, atol=1e-4)  # its backward pass starts at its own end
    assert reader.log_probs(np.zeros((0, N_FEATURES), dtype=np.float32)).shape == (0, vocab.N_CHORDS)


def test_an_ensemble_averages_its_readers_probabilities() -> None:
    nets = [_reader_net(1), _reader_net(2)]
    x = np.random.default_rng(0).random((6, N_FEATURES)).astype(np.float32)
    state = {f"{PREFIX}{i}.{k}": v for i, net in enumerate(nets) for k, v in net.state_dict().items()}
    with torch.no_grad():
        probs = [torch.softmax(net(torch.from_numpy(x)[None]), -1)[0].numpy() for net in nets]
    np.testing.assert_allclose(SongReader(state, nets[0].config, 2).log_probs(x), np.log((probs[0] + probs[1]) / 2),
                               atol=1e-4)


def _save_base(path: Path, held_out: list[str]) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    net = ChordNet(ChordConfig(n_hidden=8, n_embd=4))
    save_checkpoint(path, net, kind=KIND, model_config=net.config.to_dict(), tokenizer_config={"slot": "beat"},
                    data={"held_out_songs": held_out}, metrics={"valid_loss": 2.0},
                    extra={"train_command": "base"}, half=False)
    return net.state_dict()


def test_merged_readers_sit_beside_the_unchanged_live_model(tmp_path: Path) -> None:
    held = ["pop909/032", "openewld/[Traditional]/x"]
    live = _save_base(tmp_path / "base.pt", held)
    readers = []
    for i in range(2):
        path = tmp_path / f"reader{i}.pt"
        net = _reader_net(10 + i)
        save_checkpoint(path, net, kind=READER_KIND, model_config=net.config.to_dict(), tokenizer_config={},
                        data={"held_out_songs": held[::-1]}, metrics={"valid_loss": 2.1},
                        extra={"train_command": f"reader {i}"}, half=False)
        readers.append(path)
    merge_readers(tmp_path / "base.pt", readers, tmp_path / "merged.pt", "companion train harmony --reader")
    state, meta = load_checkpoint(tmp_path / "merged.pt", kind=KIND)
    assert all(torch.equal(state[k], v) for k, v in live.items())  # live playing is the base's model
    assert meta["data"]["held_out_songs"] == held and meta["model_config"]["n_readers"] == 2
    model = load_stepper(tmp_path / "merged.pt")
    assert isinstance(model, ChordModel) and model.reader is not None and len(model.reader.models) == 2
    assert load_stepper(tmp_path / "base.pt").reader is None

    melody = np.repeat([62, 66, 69, 67, 66, 64, 62, 62], 4)  # D major
    pos = (np.arange(8) % 4).astype(np.int8)
    x = song_arrays(melody, pos, 4, 2, lookahead=True, mode="major")
    want = np.roll(model.reader.log_probs(x).reshape(8, 12, -1), 2, axis=1).reshape(8, -1)  # frame D -> absolute
    np.testing.assert_allclose(chord_log_probs(model, melody, pos, 4, (2, "major")), want, atol=1e-6)
    assert len(decode_offline(model, melody, pos, 4, (2, "major"), "beat")) == 8

    _save_base(tmp_path / "other.pt", ["pop909/043"])
    with pytest.raises(ValueError, match="held out other songs"):
        merge_readers(tmp_path / "other.pt", readers, tmp_path / "bad.pt", "x")


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped chord model")
def test_the_shipped_model_reads_offline_with_its_reader() -> None:
    assert SHIPPED_CHECKPOINT.stat().st_size < min(16 << 20, MAX_FILE_BYTES)
    assert load_stepper().reader is not None
