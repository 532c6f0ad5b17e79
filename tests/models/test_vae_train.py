"""`companion train|eval vae`: the VaeTask objective through the real trainer, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from companion.cli import main
from models.checkpoint import save_checkpoint
from models.trainer import TrainConfig, train
from models.vae.data import notes_to_tokens, save_phrase_arrays
from models.vae.net import PhraseVAENet, VAEConfig
from models.vae.phrase import PhraseVAE
from models.vae.train import KIND, TOKENS_CONFIG, VaeTask

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
    (lambda d: _file(d, "corrupt.pt", b"not a checkpoint at all"), "corrupt"),
    (lambda d: _file(d, "empty.pt", b""), "empty"),
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


# --- VaeTask through the real trainer: KL annealing and free bits --------------------------------------------


class RecordingTask(VaeTask):
    """The real VaeTask; every objective it computes is recorded (training steps and evaluations)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[dict[str, Any]] = []

    def objective(self, logits: torch.Tensor, tokens: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loss, recon, kl = super().objective(logits, tokens, mu, logvar, beta)
        self.calls.append({"training": torch.is_grad_enabled(), "step": self.step, "beta": beta,
                           "loss_x_steps": float(loss.detach()) * tokens.shape[1], "recon": recon.detach().double(),
                           "kl": kl.detach().double(), "steps": tokens.shape[1]})
        return loss, recon, kl


def _train_task(tmp_path: Path, *, free_bits: float, steps: int = 8) -> RecordingTask:
    torch.manual_seed(0)
    task = RecordingTask(_arrays([0, 0, 0, 0, 0, 1, 1, 2]), TINY, beta_max=0.4, free_bits_per_step=free_bits,
                         anneal_steps=4, n_valid=8, data_desc={"file": "test"})
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), max_steps=steps, batch_size=6, lr=3e-3, min_lr=1e-3,
                      warmup_steps=1, eval_every=steps, log_every=steps, device="cpu", amp=False, seed=0)
    result = train(task, cfg, log=lambda _msg: None)
    assert result["steps"] == steps
    return task


def test_kl_weight_anneals_linearly_to_beta_max_then_stays(tmp_path: Path) -> None:
    task = _train_task(tmp_path, free_bits=0.0)
    training = [c for c in task.calls if c["training"]]
    assert [c["step"] for c in training] == list(range(8))
    assert [c["beta"] for c in training] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4])
    evaluations = [c for c in task.calls if not c["training"]]
    assert evaluations and all(c["beta"] == 0.4 for c in evaluations)  # validation scores the final ELBO weight
    for c in training:  # no free bits: the whole KL counts, weighted by this step's beta
        assert c["loss_x_steps"] == pytest.approx(float((c["recon"] + c["beta"] * c["kl"]).mean()), rel=1e-5)
    late = training[-1]
    assert float(late["kl"].mean()) > 0 and late["loss_x_steps"] > float(late["recon"].mean())
    # the best checkpoint records the schedule and loads as the live model
    model = PhraseVAE.load(tmp_path / "run" / "best.pt")
    assert model.meta["extra"]["beta_max"] == 0.4 and model.meta["extra"]["anneal_steps"] == 4
    assert model.meta["extra"]["free_bits_per_step"] == 0.0


def test_free_bits_floor_the_kl_term(tmp_path: Path) -> None:
    task = _train_task(tmp_path, free_bits=50.0)  # a floor of 50 nats a 16th: far above any KL here
    training = [c for c in task.calls if c["training"]]
    assert any(c["beta"] > 0 and float(c["kl"].min()) > 0 for c in training)
    for c in training:  # KL under the floor costs nothing, whatever beta is
        assert c["loss_x_steps"] == pytest.approx(float(c["recon"].mean()), rel=1e-5)


def test_free_bits_scale_with_the_phrase_length_and_only_the_excess_counts() -> None:
    task = VaeTask(_arrays([0, 0, 1]), TINY, beta_max=0.5, free_bits_per_step=1.0, anneal_steps=10)
    T = 4  # a floor of 4 nats for a 4-step phrase
    tokens = torch.zeros(3, T, dtype=torch.long)
    logits = torch.zeros(3, T, 130)
    mu = torch.zeros(3, TINY.z_dim)
    mu[:, 0] = torch.tensor([2.0, 2 * 2**0.5, 4.0])  # KL = mu^2 / 2 = 2, 4 and 8 nats
    loss, recon, kl = task.objective(logits, tokens, mu, torch.zeros(3, TINY.z_dim), beta=0.5)
    assert kl.tolist() == pytest.approx([2.0, 4.0, 8.0])
    excess = torch.tensor([0.0, 0.0, 4.0])  # below and at the floor: nothing; above: the excess only
    assert float(loss) == pytest.approx(float((recon + 0.5 * excess).mean()) / T)
    assert task.beta(0) == 0.0 and task.beta(5) == pytest.approx(0.25) and task.beta(10) == task.beta(99) == 0.5
