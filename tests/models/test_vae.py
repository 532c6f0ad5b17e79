"""The phrase VAE: tokens, shapes, the unrolled decoder, seeds, a tiny model that overfits, morphs, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from companion.core.events import PPQ, Note, Phrase, RequestAnswer
from models.checkpoint import CheckpointFileError, save_checkpoint
from models.vae.data import notes_to_tokens, tokens_to_notes, transpose_windows
from models.vae.net import HOLD, N_CLASSES, NOTE_OFFSET, REST, PhraseVAENet, VAEConfig
from models.vae.phrase import PhraseVAE, key_pitch_classes, phrase_tokens
from models.vae.train import KIND, TOKENS_CONFIG

TINY = VAEConfig(n_embd=32, pos_embd=8, enc_hidden=48, enc_layers=1, dec_hidden=96, dec_layers=2, z_dim=16,
                 max_steps=32, dropout=0.0)
Q = PPQ  # a quarter note in ticks
S = PPQ // 4  # a 16th

# four 2-bar melodies (pitch, velocity, onset_ticks, duration_ticks) from the bar line
PHRASES = [
    [(60 + p, 90, i * Q, Q) for i, p in enumerate((0, 2, 4, 5, 7, 5, 4, 2))],
    [(67, 80, 0, 2 * Q), (69, 80, 2 * Q, S), (71, 80, 2 * Q + S, S), (72, 80, 3 * Q, 3 * Q), (67, 80, 7 * Q, Q)],
    [(64, 100, i * 2 * S, 2 * S) for i in range(8)] + [(62, 70, 4 * Q, 4 * Q)],
    [(57, 90, 0, Q), (60, 90, 2 * Q, Q), (64, 90, 4 * Q, 2 * Q), (69, 90, 6 * Q, 2 * Q)],
]


def _grid(notes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int]]:
    return [(p, o, d) for p, _, o, d in notes]


def _train_tiny(steps: int = 150) -> PhraseVAENet:
    """Teacher-forced autoencoding of PHRASES, as the API tokenizes them (so in the model's octave)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = PhraseVAENet(TINY)
    tokens = torch.from_numpy(np.stack([phrase_tokens(phrase, PPQ, 32)[0] for phrase in PHRASES]).astype(np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        logits, mu, logvar = net(tokens, sample=False)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens) + 1e-4 * mu.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vae") / "tiny.pt"
    save_checkpoint(path, _train_tiny(), kind=KIND, model_config=TINY.to_dict(), tokenizer_config=TOKENS_CONFIG,
                    data={"source": "four test phrases"}, metrics={"valid_loss": 0.0})
    return path


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint: Path) -> PhraseVAE:
    return PhraseVAE.load(tiny_checkpoint)


# --- tokens --------------------------------------------------------------------------------------------------


def test_tokens_round_trip_a_melody_on_the_grid() -> None:
    notes = [(60, 0, 4), (62, 4, 2), (64, 8, 8), (65, 20, 12)]
    tokens = notes_to_tokens(notes, 32)
    assert tokens[0] == NOTE_OFFSET + 60 and tokens[1] == HOLD and tokens[16] == REST
    assert tokens_to_notes(tokens) == notes


def test_tokens_keep_the_top_line_and_cut_at_the_next_onset() -> None:
    tokens = notes_to_tokens([(60, 0, 8), (67, 0, 2), (64, 4, 4), (70, 30, 8)], 32)
    assert tokens_to_notes(tokens) == [(67, 0, 2), (64, 4, 4), (70, 30, 2)]  # the lower C does not come back


def test_transposition_keeps_rests_and_holds_and_the_midi_range() -> None:
    windows = np.array([[NOTE_OFFSET + 60, HOLD, REST], [NOTE_OFFSET + 126, HOLD, REST]])
    moved = transpose_windows(windows, np.array([5, 5]))
    assert moved.tolist() == [[NOTE_OFFSET + 65, HOLD, REST], [NOTE_OFFSET + 126, HOLD, REST]]


# --- the network ---------------------------------------------------------------------------------------------


def test_shapes() -> None:
    net = PhraseVAENet(TINY).eval()
    x = torch.randint(0, N_CLASSES, (3, 24))
    logits, mu, logvar = net(x)
    assert logits.shape == (3, 24, N_CLASSES) and mu.shape == logvar.shape == (3, TINY.z_dim)
    assert net.generate(mu, 24).shape == (3, 24)
    with pytest.raises(ValueError, match="longer than the model"):
        net.encode(torch.zeros(1, 40, dtype=torch.long))


def test_unrolled_greedy_decoder_matches_the_teacher_forced_pass() -> None:
    torch.manual_seed(3)
    net = PhraseVAENet(TINY).eval()
    z = torch.randn(4, TINY.z_dim)
    tokens = net.generate(z, 32)
    with torch.no_grad():
        logits = net.decode_teacher_forced(tokens, z)
    # the greedy choice at every step is the teacher-forced argmax, except where HOLD was not allowed
    argmax = logits.argmax(-1)
    differ = argmax != tokens
    assert bool((argmax[differ] == HOLD).all())
    assert float((~differ).float().mean()) > 0.8


def test_grammar_never_holds_after_a_rest() -> None:
    torch.manual_seed(1)
    net = PhraseVAENet(TINY).eval()
    tokens = net.generate(torch.randn(8, TINY.z_dim), 32, temperature=2.0, generator=torch.Generator().manual_seed(1))
    prev = torch.cat([torch.full((8, 1), REST), tokens[:, :-1]], dim=1)
    assert not bool(((tokens == HOLD) & (prev == REST)).any())


def test_sampled_decoding_is_deterministic_with_a_seed(tiny: PhraseVAE) -> None:
    latent = tiny.encode(PHRASES[0], PPQ, 2)
    one = tiny.decode(latent, seed=7, temperature=1.5)
    assert one == tiny.decode(latent, seed=7, temperature=1.5)
    others = {tuple(tiny.decode(latent, seed=s, temperature=1.5)) for s in range(8)}
    assert len(others) > 1


# --- the trained tiny model ------------------------------------------------------------------------------------


def test_tiny_vae_overfits_its_phrases(tiny: PhraseVAE) -> None:
    for phrase in PHRASES:
        assert _grid(tiny.reconstruct(phrase, PPQ, 2)) == _grid(phrase)


def test_encode_gives_the_latent_and_decode_the_player_velocities(tiny: PhraseVAE) -> None:
    latent = tiny.encode(PHRASES[2], PPQ, 2)
    assert latent.z.shape == (TINY.z_dim,) and latent.n_steps == 32
    decoded = tiny.decode(latent)
    assert [v for _, v, _, _ in decoded] == [v for _, v, _, _ in PHRASES[2]]


def test_octaves_are_moved_in_and_back_out(tiny: PhraseVAE) -> None:
    low = [(p - 24, v, o, d) for p, v, o, d in PHRASES[0]]
    assert _grid(tiny.reconstruct(low, PPQ, 2)) == _grid(low)


def test_morph_endpoints_reproduce_their_inputs(tiny: PhraseVAE) -> None:
    steps = tiny.morph(PHRASES[0], PHRASES[3], PPQ, 2, 5)
    assert len(steps) == 5
    assert _grid(steps[0]) == _grid(PHRASES[0])
    assert _grid(steps[-1]) == _grid(PHRASES[3])


def test_morph_keeps_to_the_key_of_its_ends(tiny: PhraseVAE) -> None:
    allowed = key_pitch_classes([*PHRASES[0], *PHRASES[1]])
    assert allowed is not None
    for phrase in tiny.morph(PHRASES[0], PHRASES[1], PPQ, 2, 6):
        assert {p % 12 for p, _, _, _ in phrase} <= allowed


def test_vary_at_distance_zero_is_the_reconstruction_and_a_seed_replays(tiny: PhraseVAE) -> None:
    assert _grid(tiny.vary(PHRASES[1], PPQ, 2, 0.0, seed=4)) == _grid(PHRASES[1])
    assert tiny.vary(PHRASES[1], PPQ, 2, 0.8, seed=4) == tiny.vary(PHRASES[1], PPQ, 2, 0.8, seed=4)
    with pytest.raises(ValueError, match="distance"):
        tiny.vary(PHRASES[1], PPQ, 2, 1.5)


def test_a_played_phrase_is_varied_as_written_and_played_back_with_the_touch(tiny: PhraseVAE) -> None:
    """Quarter notes sounding for 70 % of their room, a little loose, 30 ticks behind the grid: read as the written
    phrase (rests of a 16th would otherwise open between them), and the variation sounds as detached."""
    played = [(p, v, o + 30 + (i % 3) * 4, round(d * 0.7)) for i, (p, v, o, d) in enumerate(PHRASES[0])]
    again = tiny.vary(played, PPQ, 2, 0.0, seed=4)
    assert [(p, o) for p, _, o, _ in again] == [(p, o) for p, _, o, _ in PHRASES[0]]
    assert all(abs(d - Q * 0.7) <= 0.02 * Q for _, _, _, d in again)
    morph = tiny.morph(played, PHRASES[3], PPQ, 2, 3)
    assert _grid(morph[-1]) == _grid(PHRASES[3]) and [(p, o) for p, _, o, _ in morph[0]] == \
        [(p, o) for p, _, o, _ in PHRASES[0]]


def test_long_phrases_are_handled_a_few_bars_at_a_time(tiny: PhraseVAE) -> None:
    bar = 4 * Q
    long = [(p, v, o + k * 2 * bar, d) for k in range(3) for p, v, o, d in PHRASES[k]]  # 6 bars
    varied = tiny.vary(long, PPQ, 6, 0.0)
    assert _grid(varied) == _grid(long)
    with pytest.raises(ValueError, match="fewer bars"):
        tiny.encode(long, PPQ, 6)


def test_checkpoint_round_trip(tiny_checkpoint: Path, tmp_path: Path) -> None:
    first = PhraseVAE.load(tiny_checkpoint)
    copy = tmp_path / "copy.pt"
    save_checkpoint(copy, first.net, kind=KIND, model_config=first.net.config.to_dict(),
                    tokenizer_config=TOKENS_CONFIG, data={}, metrics={})
    second = PhraseVAE.load(copy)
    assert second.net.config == TINY
    np.testing.assert_array_equal(first.encode(PHRASES[0]).z, second.encode(PHRASES[0]).z)
    with pytest.raises(CheckpointFileError, match="not a 'phrase_vae' model"):
        save_checkpoint(tmp_path / "other.pt", first.net, kind="other", model_config={}, tokenizer_config={},
                        data={}, metrics={})
        PhraseVAE.load(tmp_path / "other.pt")
    with pytest.raises(CheckpointFileError, match="does not exist"):
        PhraseVAE.load(tmp_path / "missing.pt")


# --- the live adapter ---------------------------------------------------------------------------------------


def _request(settings: dict, phrase_notes: list[tuple[int, int, int, int]], start: int, end: int) -> RequestAnswer:
    bar = 4 * Q
    notes = tuple(Note(p, v, 8 * bar + o, d) for p, v, o, d in phrase_notes)
    return RequestAnswer(Phrase(notes, 8 * bar, 10 * bar, bar), start, end, "t", 3, (0, "major"), settings)


def test_vae_generator_varies_into_the_answer_window(tiny_checkpoint: Path) -> None:
    from companion.worker.generators import VaeGenerator

    bar = 4 * Q
    generator = VaeGenerator(tiny_checkpoint)
    request = _request({"vae": {"op": "vary", "seed": 3, "bars": 2}, "distance": 0.0, "output_channel": 2},
                       PHRASES[0], 11 * bar, 13 * bar)
    notes = list(generator.stream(request))
    assert [(n.pitch, n.start_ticks - 11 * bar, n.duration_ticks) for n in notes] == _grid(PHRASES[0])
    assert all(n.channel == 2 for n in notes)


def test_vae_generator_morphs_step_after_step(tiny_checkpoint: Path) -> None:
    from companion.worker.generators import VaeGenerator

    bar = 4 * Q
    settings = {"vae": {"op": "morph", "other": [list(n) for n in PHRASES[3]], "steps": 3, "bars": 2}}
    notes = list(VaeGenerator(tiny_checkpoint).stream(_request(settings, PHRASES[0], 11 * bar, 17 * bar)))
    starts = [n.start_ticks for n in notes]
    assert starts == sorted(starts) and 11 * bar <= starts[0] and notes[-1].end_ticks <= 17 * bar
    first = [(n.pitch, n.start_ticks - 11 * bar, n.duration_ticks) for n in notes if n.start_ticks < 13 * bar]
    last = [(n.pitch, n.start_ticks - 15 * bar, n.duration_ticks) for n in notes if n.start_ticks >= 15 * bar]
    assert first == _grid(PHRASES[3]) and last == _grid(PHRASES[0])


def test_the_numpy_decoder_matches_the_torch_one(tiny: PhraseVAE) -> None:
    torch.manual_seed(5)
    z = torch.randn(6, TINY.z_dim)
    allowed = torch.ones(N_CLASSES, dtype=torch.bool)
    allowed[NOTE_OFFSET + 61] = False
    expected = tiny.net.generate(z, 32, allowed=allowed, note_bias=0.5)
    for row, want in zip(z, expected, strict=True):
        got = tiny._decoder.generate(row.numpy(), 32, allowed=allowed.numpy(), note_bias=0.5)
        assert got.tolist() == want.tolist()
