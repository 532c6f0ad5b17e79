"""The C decoding step (models/continuation/_decode.c through fast_decode) against torch's GPT.step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.continuation import fast_decode
from models.continuation.fast_decode import BLOCK, CStep, blocked, dequantized, quantize_rows, stepper
from models.transformer import GPT, FastStep, GPTConfig

pytestmark = pytest.mark.skipif(not fast_decode.c_step_available(),
                                reason="models.continuation._decode is not built (pip install -e . with a C compiler)")


def _model(vocab: int = 70, n_embd: int = 32, n_head: int = 4, n_layer: int = 2, block_size: int = 48,
           bias: bool = False, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                          dropout=0.0, bias=bias)).eval()
    with torch.no_grad():  # weights of a trained model's size, not the 0.02 of the initialisation
        for p in model.parameters():
            p.mul_(8.0 if p.dim() >= 2 else 1.0).add_(0.05 * torch.randn_like(p))
    return model


def test_quantized_rows_reconstruct_each_row_within_half_a_step() -> None:
    weight = torch.randn(37, 19) * torch.linspace(0.1, 3.0, 37)[:, None]  # rows of very different ranges
    q, scale = quantize_rows(weight)
    assert q.dtype == np.int8 and q.shape == (19, 37) and scale.shape == (37,)
    back = (q.astype(np.float32) * scale).T
    assert np.all(np.abs(back - weight.numpy()) <= scale[:, None] / 2 + 1e-6)
    assert np.abs(q).max() == 127  # each row uses the whole range


def test_blocked_layout_pads_outputs_with_zeros() -> None:
    q = np.arange(3 * 70, dtype=np.int64).reshape(3, 70).astype(np.int8)
    b = blocked(q)
    assert b.shape == (2, 3, BLOCK)
    assert np.array_equal(b[0], q[:, :BLOCK]) and np.array_equal(b[1, :, : 70 - BLOCK], q[:, BLOCK:])
    assert not b[1, :, 70 - BLOCK :].any()


def _kernels() -> list[str]:
    """The multiply-add kernels this CPU runs (AVX-512, AVX2 + FMA, plain C): each is checked."""
    if not fast_decode.c_step_available():
        return ["generic"]
    from models.continuation import _decode

    chosen = _decode.kernel()
    names = []
    for name in ("avx512", "avx2", "generic"):
        try:
            _decode.kernel(name)
            names.append(name)
        except ValueError:
            pass
    _decode.kernel(chosen)
    return names


@pytest.fixture(params=_kernels())
def kernel(request: pytest.FixtureRequest) -> str:
    from models.continuation import _decode

    chosen = _decode.kernel()
    yield _decode.kernel(request.param)
    _decode.kernel(chosen)


@pytest.mark.parametrize(("bias", "vocab", "n_embd"), [(False, 70, 32), (True, 200, 64)])
def test_c_step_computes_what_torch_computes_with_the_same_int8_weights(bias: bool, vocab: int, n_embd: int,
                                                                       kernel: str) -> None:
    """Logits and the KV cache as GPT.step on a copy holding the dequantized weights, from a prefill by torch,
    with every kernel this CPU has."""
    model = _model(vocab=vocab, n_embd=n_embd, bias=bias)
    twin = dequantized(model)
    fast = CStep(model)
    torch.manual_seed(1)
    tokens = torch.randint(0, vocab, (1, 40))
    want_cache, got_cache = model.new_cache(1, 40), model.new_cache(1, 40)
    with torch.inference_mode():
        twin.step(tokens[:, :6], want_cache)
        twin.step(tokens[:, :6], got_cache)
        for i in range(6, 40):
            want = twin.step(tokens[:, i : i + 1], want_cache)[0]
            got = fast.step(int(tokens[0, i]), got_cache)
            assert got.shape == (vocab,) and got.dtype == torch.float32
            torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)
            assert got_cache.length == want_cache.length == i + 1
    assert torch.equal(got_cache.tokens, want_cache.tokens)
    torch.testing.assert_close(got_cache.kv, want_cache.kv, atol=2e-4, rtol=1e-4)


def test_a_full_cache_slides_through_torch_and_the_c_step_goes_on_from_there() -> None:
    model = _model()
    fast = CStep(model)
    tokens = torch.randint(0, 70, (1, 30), generator=torch.Generator().manual_seed(3))
    cache = model.new_cache(1, 16)
    with torch.inference_mode():
        model.step(tokens[:, :16], cache)
        ref = cache.copy()
        want = model.step(tokens[:, 16:17], ref)[0]  # slides: the oldest quarter dropped, the rest re-encoded
        got = fast.step(int(tokens[0, 16]), cache)
        torch.testing.assert_close(got, want)
        assert cache.length == ref.length < 16
        twin = dequantized(model)
        for i in range(17, 20):
            torch.testing.assert_close(fast.step(int(tokens[0, i]), cache), twin.step(tokens[:, i : i + 1], ref)[0],
                                       atol=2e-4, rtol=1e-4)


def test_c_step_stays_close_to_the_fp32_model_and_picks_its_likely_tokens() -> None:
    """The int8 weights move the logits a little: the most likely token is the same nearly always."""
    model = _model(vocab=120, n_embd=64)
    fast = CStep(model)
    tokens = torch.randint(0, 120, (1, 40), generator=torch.Generator().manual_seed(2))
    fp32_cache, c_cache = model.new_cache(1, 48), model.new_cache(1, 48)
    same_top, worst = 0, 0.0
    with torch.inference_mode():
        for i in range(40):
            want = model.step(tokens[:, i : i + 1], fp32_cache)[0]
            got = fast.step(int(tokens[0, i]), c_cache)
            same_top += int(want.argmax() == got.argmax())
            worst = max(worst, float((want - got).abs().max() / want.abs().max()))
    assert same_top >= 36 and worst < 0.05


def test_c_step_checks_its_arguments() -> None:
    model = _model()
    fast = CStep(model)
    cache = model.new_cache(1, 8)
    logits = np.empty(70, dtype=np.float32)
    kv = cache.kv.numpy()
    with pytest.raises(ValueError, match="vocabulary"):
        fast.decoder.step(70, 0, kv, logits)
    with pytest.raises(ValueError, match="position"):
        fast.decoder.step(1, 8, kv, logits)
    with pytest.raises(ValueError, match="logits"):
        fast.decoder.step(1, 0, kv, np.empty(69, dtype=np.float32))
    with pytest.raises(ValueError, match="kv"):
        fast.decoder.step(1, 0, np.zeros(kv.size + 3, np.float32), logits)


def test_the_kernel_in_use_is_the_best_this_cpu_has_and_a_missing_one_is_refused() -> None:
    from models.continuation import _decode

    assert _decode.kernel() == _kernels()[0]
    with pytest.raises(ValueError, match="no neon9 kernel"):
        _decode.kernel("neon9")
    assert _decode.kernel() == _kernels()[0]


def test_the_decoder_refuses_weights_of_the_wrong_size() -> None:
    model = _model()
    layer = (None,) * 16
    with pytest.raises(ValueError, match="wte has"):
        fast_decode.Decoder(32, 4, 70, 48, 1e-5, np.zeros(5, np.float32), np.zeros(32 * 128, np.int8),
                            np.ones(70, np.float32), np.ones(32, np.float32), None, np.zeros(48 * 4, np.float32),
                            np.zeros(48 * 4, np.float32), [])
    with pytest.raises(ValueError, match="16-tuple"):
        CStep(model).decoder.__class__(32, 4, 70, 48, 1e-5, model.wte.weight.detach().numpy(),
                                       np.zeros(32 * 128, np.int8), np.ones(70, np.float32),
                                       np.ones(32, np.float32), None, np.zeros(48 * 4, np.float32),
                                       np.zeros(48 * 4, np.float32), [layer[:3]])


def test_stepper_picks_the_c_step_for_int8_and_torch_for_fp32_or_extra_tables() -> None:
    model = _model()
    runner, step = stepper(model, quantize=True)
    assert runner is model and isinstance(step, CStep)
    runner, step = stepper(model, quantize=False)
    assert runner is model and isinstance(step, FastStep)
    torch.manual_seed(0)
    with_extra = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=16, n_extra=(3,)))
    runner, step = stepper(with_extra, quantize=True)
    assert isinstance(step, FastStep)
