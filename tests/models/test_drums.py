"""The drum GAN's data, features, metrics and checkpoint: Groove bars on the grid, a tiny training run, loading."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from models.checkpoint import CheckpointFileError, save_checkpoint
from models.drums.bars import (
    N_PIECES,
    STEPS,
    STYLES,
    accents,
    bars_from_hits,
    density,
    style_index,
    syncopation,
    taps,
    timing_spread,
)
from models.drums.calibration import Calibration, bar_timing, fit
from models.drums.gan import Conditions, DrumGANConfig, Generator, NumpyGenerator
from models.drums.groove import BarSet, read_performance
from models.drums.metrics import classifier_accuracy, kick_snare_agreement, wasserstein
from models.drums.model import load_drum_model
from models.drums.train import bar_layout, train


def test_hits_go_to_the_nearest_step_with_their_offset_and_the_loudest_wins() -> None:
    bars = bars_from_hits([(4.3, 0, 100), (15.6, 1, 64), (4.1, 0, 20), (2.0, 2, 127)], steps_total=20)
    assert len(bars) == 2
    first, second = bars
    assert first.hits[0, 4] == 1 and first.offset[0, 4] == pytest.approx(0.3, abs=1e-5)
    assert first.velocity[0, 4] == pytest.approx(100 / 127)  # the quieter hit in the same cell lost
    assert second.hits[1, 0] == 1 and second.offset[1, 0] == pytest.approx(-0.4, abs=1e-5)  # 15.6 -> next bar
    assert first.hit_list()[0] == (2, 2, 1.0, 0.0)


def test_style_tags_fold_onto_classes() -> None:
    assert STYLES[style_index("funk/groove1")] == "funk"
    assert STYLES[style_index("latin-brazilian-baiao")] == "latin"
    assert STYLES[style_index("gospel")] == "other"


def test_features_of_a_known_bar() -> None:
    hits = np.zeros((1, N_PIECES, STEPS), np.float32)
    vel = np.zeros_like(hits)
    hits[0, 0, 0] = hits[0, 1, 4] = 1
    vel[0, 0, 0], vel[0, 1, 4] = 1.0, 0.5
    assert syncopation(hits)[0] == 1  # beat 2 before a silent beat 3 (Longuet-Higgins & Lee)
    hits[0, 0, 8] = 1
    assert syncopation(hits)[0] == 0  # beats 1, 2 and 3: nothing syncopated
    hits[0, 0, 8] = 0
    assert np.allclose(taps(hits, vel)[0, [0, 4]], [1.0, 0.5])
    assert density(hits)[0] == pytest.approx(2 / 32)
    off = hits.copy()
    hits[0, 2, 3] = 1  # a 16th before beat 2, which is silent: syncopated
    assert syncopation(hits)[0] > 0
    assert timing_spread(hits, off * 0.2)[0] > 0
    assert accents(np.array([[1.0, 0, 0.2, 0, 0.9, 0, 0.1, 0] * 2]))[0, [0, 4, 2]].tolist() == [True, True, False]


def test_metrics_tell_same_from_different() -> None:
    a = np.arange(100.0)
    assert wasserstein(a, a) == 0 and wasserstein(a, a + 5) == pytest.approx(5, rel=0.01)
    rng = np.random.default_rng(0)
    real = (rng.random((200, 3, N_PIECES, STEPS)) < 0.1).astype(np.float32)
    fake = (rng.random((200, 3, N_PIECES, STEPS)) < 0.6).astype(np.float32)
    assert classifier_accuracy(real, fake, epochs=100) > 0.9
    assert classifier_accuracy(real, fake, np.arange(200) // 10, epochs=100) > 0.9  # also held out by group


def test_the_two_sample_classifier_holds_out_whole_performances() -> None:
    """Real and "generated" bars from one distribution, but every real performance repeats one pattern: with the
    performances' bars mixed over the folds the classifier recognizes them; held out by performance it cannot."""
    rng = np.random.default_rng(0)
    patterns = (rng.random((40, 3, N_PIECES, STEPS)) < 0.3).astype(np.float32)  # one per performance
    groups = np.repeat(np.arange(40), 10)
    real = patterns[groups]
    fake = (rng.random((400, 3, N_PIECES, STEPS)) < 0.3).astype(np.float32)
    assert classifier_accuracy(real, fake, epochs=150) > 0.8
    assert classifier_accuracy(real, fake, groups, epochs=150) < 0.65
    accent = np.zeros((1, STEPS), bool)
    accent[0, [0, 8]] = True
    kick = np.zeros((1, N_PIECES, STEPS))
    kick[0, 0, 0] = 1
    assert kick_snare_agreement(kick, accent) == 0.5


def _synthetic(n: int) -> BarSet:
    """A backbeat in two styles: kick on 1 and 3, snare on 2 and 4, hats on 8ths; half of them train."""
    hits = np.zeros((n, N_PIECES, STEPS), np.float32)
    hits[:, 0, [0, 8]] = hits[:, 1, [4, 12]] = 1
    hits[:, 2, ::2] = 1
    rng = np.random.default_rng(1)
    return BarSet(hits=hits, velocity=hits * 0.7, offset=hits * rng.normal(0, 0.05, hits.shape).astype(np.float32),
                  style=np.arange(n) % 2, bpm=np.full(n, 100.0, np.float32), fill=np.zeros(n, np.float32),
                  split=np.where(np.arange(n) < n // 2, 0, 1), drummer=np.ones(n, np.int64),
                  source=np.arange(n))


def test_a_tiny_gan_learns_a_backbeat_and_round_trips_through_its_checkpoint(tmp_path: Path) -> None:
    config = DrumGANConfig(z_dim=8, n_hidden=64, n_layer=2, d_hidden=64)
    net, log = train(_synthetic(64), config, rec_weight=5.0, rec_offset=0.0, steps=150, batch=32, lr=3e-3,
                     max_seconds=120, seed=0, device=torch.device("cpu"))
    assert log["val_rec"] < 0.3
    path = save_checkpoint(tmp_path / "d.pt", net, kind="drum_gan", model_config=config.to_dict(),
                           tokenizer_config=bar_layout(),
                           data={}, metrics={})
    model = load_drum_model(path)
    cond = Conditions(style=np.zeros(4, int), bpm=np.full(4, 100.0), taps=np.zeros((4, STEPS)),
                      taps_given=np.zeros(4), density=np.full(4, 0.5), velocity=np.full(4, 0.7), fill=np.zeros(4))
    a, b = model.generate(cond, seed=3), model.generate(cond, seed=3)
    assert np.array_equal(a.hits, b.hits) and a.hits.shape == (4, N_PIECES, STEPS)
    assert a.hits[:, 0, 0].mean() >= 0.75 and a.hits[:, 1, 4].mean() >= 0.75  # kick on 1, snare on 2
    assert np.all(a.velocity[a.hits == 0] == 0)


def test_a_checkpoint_of_another_kind_is_refused(tmp_path: Path) -> None:

    path = save_checkpoint(tmp_path / "x.pt", {"w": torch.zeros(1)}, kind="phrase_vae", model_config={},
                           tokenizer_config={}, data={}, metrics={})
    with pytest.raises(CheckpointFileError, match="not a 'drum_gan' model"):
        load_drum_model(path)


def test_a_drum_file_is_read_on_its_own_click(tmp_path: Path) -> None:
    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90)))
    for note, delta in ((36, 0), (44, 480), (38, 490)):  # kick on 1, pedal hat on 2, snare 10 ticks after 3
        track.append(mido.Message("note_on", channel=9, note=note, velocity=90, time=delta))
    mid.tracks.append(track)
    mid.save(tmp_path / "d.mid")
    bars, bpm = read_performance(tmp_path / "d.mid")
    assert bpm == pytest.approx(90)
    bar = bars[0]
    assert bar.hits[0, 0] == bar.hits[2, 4] == bar.hits[1, 8] == 1  # pedal hat folds onto the closed hat
    assert bar.offset[1, 8] == pytest.approx(10 / 120)


def test_the_live_core_plays_the_models_pieces_and_styles() -> None:
    """companion.core cannot import models/: its copy of the kit and the styles must match the model's."""
    from companion.core import drums as core_drums
    from models.drums import bars

    assert core_drums.PIECE_NOTES == bars.PIECE_NOTES and core_drums.DRUM_STYLES == bars.STYLES
    assert core_drums.STEPS_PER_MODEL_BAR == bars.STEPS


def _bars_with_timing(n: int, spread: float, mean: float, velocity: float, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    hits = (rng.random((n, N_PIECES, STEPS)) < 0.2).astype(np.float32)
    off = np.clip(mean + spread * rng.standard_normal(hits.shape), -0.5, 0.5) * hits
    vel = np.clip(velocity + 0.1 * rng.standard_normal(hits.shape), 0.05, 1) * hits
    return hits, vel.astype(np.float32), off.astype(np.float32)


def test_the_calibration_maps_timing_and_velocity_onto_the_real_bars_and_keeps_the_hits() -> None:
    style = np.arange(600) % 2
    real = _bars_with_timing(600, 0.15, -0.05, 0.6, seed=0)
    stiff = _bars_with_timing(600, 0.05, 0.02, 0.4, seed=1)  # the "generator": too tight, early and soft
    bpm = np.full(600, 100.0)
    calibration = Calibration.from_dict(fit(style, bpm, real, stiff).to_dict())  # as the checkpoint stores it
    fresh = _bars_with_timing(600, 0.05, 0.02, 0.4, seed=2)
    looseness = np.random.default_rng(3).random(600)
    vel, off = calibration.apply(style, bpm, fresh[0], fresh[1], fresh[2], looseness)
    _, real_mean, real_spread = bar_timing(real[0], real[2])
    _, mean, spread = bar_timing(fresh[0], off)
    assert np.median(spread) == pytest.approx(np.median(real_spread), rel=0.1)
    assert np.median(mean) == pytest.approx(np.median(real_mean), abs=0.01)
    on = fresh[0] > 0.5
    assert vel[on].mean() == pytest.approx(real[1][real[0] > 0.5].mean(), abs=0.02)
    assert np.all(vel[~on] == 0) and np.all(off[~on] == 0) and np.abs(off).max() <= 0.5
    # the order of the hits in time within a bar stays the model's
    b = int(np.argmax(on.sum(axis=(1, 2))))
    assert np.array_equal(np.argsort(fresh[2][b][on[b]]), np.argsort(off[b][on[b]]))


def test_the_calibrated_spread_follows_the_tempo_as_the_drummers_does() -> None:
    """Real bars whose spread in 16ths grows with tempo (a looseness in milliseconds): a generator that plays one
    spread at every tempo gets the real spread of each tempo, not the mixture of all tempos; a looser draw gives
    a looser bar, and the hits' order in time stays the generator's."""
    n = 1200
    bpm = np.where(np.arange(n) % 2 == 0, 80.0, 160.0)
    style = np.zeros(n, dtype=np.int64)
    slow, fast = (_bars_with_timing(n // 2, s, 0.0, 0.6, seed=i) for i, s in ((0, 0.08), (1, 0.16)))
    real = tuple(np.empty((n, *a.shape[1:]), a.dtype) for a in slow)
    for r, a, b in zip(real, slow, fast, strict=True):
        r[0::2], r[1::2] = a, b
    calibration = Calibration.from_dict(fit(style, bpm, real, _bars_with_timing(n, 0.05, 0.0, 0.6, seed=2)).to_dict())
    assert calibration.tempo_exponent == pytest.approx(1.0, abs=0.1)
    fresh = _bars_with_timing(n, 0.05, 0.0, 0.6, seed=3)
    _, off = calibration.apply(style, bpm, fresh[0], fresh[1], fresh[2], np.random.default_rng(4).random(n))
    _, _, spread = bar_timing(fresh[0], off)
    _, _, real_spread = bar_timing(real[0], real[2])
    for tempo in (80.0, 160.0):
        assert np.median(spread[bpm == tempo]) == pytest.approx(np.median(real_spread[bpm == tempo]), rel=0.1)
    _, tight = calibration.apply(style, bpm, fresh[0], fresh[1], fresh[2], np.full(n, 0.1))
    _, loose = calibration.apply(style, bpm, fresh[0], fresh[1], fresh[2], np.full(n, 0.9))
    assert np.all(bar_timing(fresh[0], tight)[2] <= bar_timing(fresh[0], loose)[2] + 1e-9)
    b = int(np.argmax(fresh[0].sum(axis=(1, 2))))
    on = fresh[0][b] > 0.5
    assert np.array_equal(np.argsort(fresh[2][b][on], kind="stable"), np.argsort(loose[b][on], kind="stable"))


def test_the_numpy_forward_pass_is_the_generators() -> None:
    torch.manual_seed(0)
    net = Generator(DrumGANConfig(z_dim=8, n_hidden=32, n_layer=2)).eval()
    z, c = torch.randn(5, 8), torch.randn(5, net.config.cond_dim)
    with torch.no_grad():
        expected = net(z, c)
    got = NumpyGenerator(net)(z.numpy(), c.numpy())
    for e, g in zip(expected, got, strict=True):
        assert np.allclose(e.numpy(), g, atol=1e-5)


def test_the_shipped_checkpoint_carries_its_calibration_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    model = load_drum_model()
    assert model.calibration is not None
    assert "train split" in model.meta["extra"]["calibration_fitted_on"]
    damaged = model.calibration.to_dict()
    damaged["velocity_gen"] = damaged["velocity_gen"][:3]
    path = save_checkpoint(tmp_path / "d.pt", model.net, kind="drum_gan", model_config=model.config.to_dict(),
                           tokenizer_config=model.meta["tokenizer_config"], data={}, metrics={},
                           extra={"calibration": damaged})
    with pytest.raises(CheckpointFileError, match="d.pt has a damaged calibration .*velocity_gen has 3 rows"):
        load_drum_model(path)


def test_one_performance_keeps_its_looseness_and_performances_still_cover_the_drummers_range() -> None:
    """With a performance's feel seed its bars stay near one looseness (as a Groove drummer's do), and over many
    performances the bars still take every quantile of the drummers' spread alike; without it each bar draws its
    own."""
    from models.drums.model import _looseness

    per_performance = [_looseness(np.random.default_rng(bar_seed), 16, feel_seed)
                       for feel_seed in range(400) for bar_seed in [feel_seed * 1000]]
    inside = np.mean([q.std() for q in per_performance])
    assert 0.12 < inside < 0.25  # the Groove performances' own: 0.20; uniform draws: 0.29
    every = np.concatenate(per_performance)
    assert np.histogram(every, bins=5, range=(0, 1))[0].min() > 0.15 * len(every)  # still uniform overall
    alone = _looseness(np.random.default_rng(1), 4000, None)
    assert abs(alone.std() - 0.289) < 0.02
    same = _looseness(np.random.default_rng(2), 3, 7), _looseness(np.random.default_rng(2), 3, 7)
    assert np.array_equal(*same)  # the same seeds, the same feel
