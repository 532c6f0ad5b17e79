"""Tests of the shared Transformer: shapes, incremental == full forward, sliding cache, tiny overfit."""

from __future__ import annotations

import pytest
import torch

from models.continuation.fast_decode import int8_torch_copy
from models.transformer import FULL_PRECISION_LAYERS, GPT, FastStep, GPTConfig


def _tiny(**kw: object) -> GPT:
    cfg = dict(vocab_size=17, block_size=64, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    cfg.update(kw)
    torch.manual_seed(0)
    return GPT(GPTConfig(**cfg)).eval()


def test_forward_shapes_and_loss() -> None:
    model = _tiny()
    idx = torch.randint(0, 17, (3, 20))
    targets = idx.clone()
    targets[:, :5] = -1
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 20, 17)
    assert loss is not None and loss.ndim == 0 and torch.isfinite(loss)
    _, no_loss = model(idx)
    assert no_loss is None


def test_too_long_sequence_is_refused() -> None:
    model = _tiny()
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 65, dtype=torch.long))


@torch.inference_mode()
def test_incremental_steps_match_full_forward() -> None:
    model = _tiny(n_extra=(4, 3))
    idx = torch.randint(0, 17, (2, 23))
    extra = torch.stack([torch.arange(23) % 4, torch.arange(23) % 3], dim=-1).expand(2, 23, 2)
    full, _ = model(idx, extra=extra)
    cache = model.new_cache(batch=2)
    # first a chunk of 5 tokens, then one at a time, then a chunk of 3
    got = [model.step(idx[:, :5], cache, extra[:, :5])]
    for t in range(5, 20):
        got.append(model.step(idx[:, t : t + 1], cache, extra[:, t : t + 1]))
    got.append(model.step(idx[:, 20:], cache, extra[:, 20:]))
    expected = torch.stack([full[:, 4]] + [full[:, t] for t in range(5, 20)] + [full[:, 22]], dim=1)
    assert torch.allclose(torch.stack(got, dim=1), expected, atol=1e-5)
    assert cache.length == 23


@torch.inference_mode()
def test_truncate_and_copy_roll_back() -> None:
    model = _tiny()
    idx = torch.randint(0, 17, (1, 10))
    cache = model.new_cache()
    model.step(idx[:, :6], cache)
    fork = cache.copy()
    a = model.step(idx[:, 6:7], cache)
    model.step(idx[:, 7:9], cache)
    cache.truncate(6)
    b = model.step(idx[:, 6:7], cache)
    c = model.step(idx[:, 6:7], fork)
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, c, atol=1e-6)
    with pytest.raises(ValueError):
        cache.truncate(99)


@torch.inference_mode()
def test_sliding_cache_matches_forward_over_the_window() -> None:
    model = _tiny()
    idx = torch.randint(0, 17, (1, 40))
    cache = model.new_cache(capacity=16)
    for t in range(40):
        last = model.step(idx[:, t : t + 1], cache)
    # after sliding, the cache holds exactly what a fresh forward over its last `length` tokens gives
    n = cache.length
    assert n <= 16
    full, _ = model(idx[:, 40 - n :])
    assert torch.allclose(last, full[:, -1], atol=1e-4)


def test_tiny_model_overfits_a_few_sequences() -> None:
    model = _tiny(n_layer=1)
    model.train()
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, 17, (4, 24), generator=g)
    opt = model.configure_optimizer(weight_decay=0.0, lr=3e-3)
    first = None
    for _ in range(150):
        _, loss = model(data[:, :-1], data[:, 1:])
        assert loss is not None
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 2.5
    assert loss.item() < 0.3


@pytest.mark.parametrize(("quantize", "full_precision"), [(False, FULL_PRECISION_LAYERS), (True, ()),
                                                       (True, ("attn.c_proj", "lm_head"))])
def test_fast_step_gives_the_logits_and_cache_of_gpt_step(quantize: bool, full_precision: tuple[str, ...]) -> None:
    """The same maths as GPT.step; on an int8 model, layers run in fp32 (same weights) differ by rounding only."""
    model = _tiny(block_size=32, n_extra=(3,))
    runner = int8_torch_copy(model) if quantize else model
    fast = FastStep(runner, full_precision)
    torch.manual_seed(1)
    tokens = torch.randint(0, 17, (1, 40))
    extra = torch.randint(0, 3, (1, 40, 1))
    slow_cache, fast_cache = runner.new_cache(1, 24), runner.new_cache(1, 24)
    atol = 1e-4 if not quantize else 5e-4 if not full_precision else 5e-3
    with torch.inference_mode():
        runner.step(tokens[:, :5], slow_cache, extra[:, :5])
        runner.step(tokens[:, :5], fast_cache, extra[:, :5])
        for i in range(5, 40):  # runs past the capacity: the fast path hands the slide to GPT.step
            want = runner.step(tokens[:, i : i + 1], slow_cache, extra[:, i : i + 1])[0]
            got = fast.step(int(tokens[0, i]), fast_cache, extra[0, i].tolist())
            assert got.shape == (17,)
            torch.testing.assert_close(got, want, atol=atol, rtol=1e-4)
            assert fast_cache.length == slow_cache.length
    n = slow_cache.length
    assert torch.equal(fast_cache.tokens[:, :n], slow_cache.tokens[:, :n])
    assert torch.equal(fast_cache.extra[:, :n], slow_cache.extra[:, :n])
    torch.testing.assert_close(fast_cache.kv[..., :n, :], slow_cache.kv[..., :n, :], atol=atol, rtol=1e-4)
