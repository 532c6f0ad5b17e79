"""Fixtures the unit tests share (plain helpers live in sibling modules, e.g. harmony_fakes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harmony_fakes import RANGES


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised chorale net saved like the shipped one (CPU, milliseconds)."""
    import torch

    from models.checkpoint import save_checkpoint
    from models.chorale.jsb import JsbVocab
    from models.chorale.net import ChoraleConfig, ChoraleNet

    vocab = JsbVocab()
    torch.manual_seed(0)
    net = ChoraleNet(ChoraleConfig(vocab_size=vocab.size, block_size=64, n_layer=1, n_head=2, n_embd=32,
                                   dropout=0.0, head_hidden=64, head_layers=1))
    path = tmp_path_factory.mktemp("harmony") / "tiny.pt"
    save_checkpoint(path, net, kind="harmonizer", model_config=net.config.to_dict(),
                    tokenizer_config={**vocab.to_dict(), "voice_ranges": [list(r) for r in RANGES]},
                    data={}, metrics={})
    return path
