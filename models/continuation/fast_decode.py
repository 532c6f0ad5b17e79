"""Live decoding of the continuation Transformer: the C step (``_decode.c`` beside this file) where built, else torch.

``stepper(model)`` gives what ``ContinuationModel`` calls for each sampled token: ``step(token, cache)`` ->
logits (vocab,) as a torch tensor, appending the token to the ``KVCache`` exactly as ``GPT.step`` would (a
prompt's prefill by torch and the steps here share one cache). The C step reads int8 weights with one scale per
output (weight-only: activations stay fp32): 2-4x faster per token than torch's int8 kernels at batch 1 on a
laptop-class CPU. Where the extension is missing (no C compiler at install) or the model has extra embedding
tables, ``FastStep`` on torch's dynamic-int8 copy of the model does the same job, more slowly.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from models.transformer import GPT, FastStep, KVCache

try:
    from models.continuation._decode import BLOCK, Decoder  # BLOCK: outputs per weight block of the C step's layout
except ImportError:  # built by `pip install -e .` where a C compiler exists (setup.py)
    BLOCK, Decoder = 0, None  # no C step: no weights are laid out for it


def c_step_available() -> bool:
    return Decoder is not None


def quantize_rows(weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights (in, out) and fp32 scales (out,) for a Linear weight (out, in): symmetric, one scale per
    output, so that ``weight ~= (q * scale).T``."""
    w = weight.detach().float().numpy()
    scale = np.abs(w).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return np.ascontiguousarray(q.T), scale.astype(np.float32)


def blocked(q: np.ndarray) -> np.ndarray:
    """int8 weights (in, out) laid out as the C step reads them: (out / BLOCK rounded up, in, BLOCK), the padding
    outputs zero."""
    n_in, n_out = q.shape
    padded = np.zeros((n_in, -(-n_out // BLOCK) * BLOCK), dtype=np.int8)
    padded[:, :n_out] = q
    return np.ascontiguousarray(padded.reshape(n_in, -1, BLOCK).transpose(1, 0, 2))


def dequantized(model: GPT) -> GPT:
    """A copy of ``model`` whose Linear weights are what the C step computes with (for checking it)."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, torch.nn.Linear):  # the tied head too, untied: the embedding stays fp32
                q, scale = quantize_rows(module.weight)
                module.weight = torch.nn.Parameter(torch.from_numpy((q.astype(np.float32) * scale).T.copy()))
    return twin


def _f32(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else np.ascontiguousarray(t.detach().float().numpy())


def _linear(module: torch.nn.Linear) -> tuple[Any, ...]:
    q, scale = quantize_rows(module.weight)
    return blocked(q), scale, _f32(module.bias)


class CStep:
    """``GPT.step`` for one token of a batch-1 cache, computed by the C decoder; falls back to ``GPT.step``
    where the fast case does not hold (cache full: the slide; positions beyond the rotary table)."""

    def __init__(self, model: GPT) -> None:
        if Decoder is None:
            raise RuntimeError("the C decoder (models.continuation._decode) is not built: "
                               "pip install -e . with a C compiler")
        c = model.config
        if c.n_extra:
            raise ValueError("the C decoder has no extra embedding tables")
        self.model = model
        layers = []
        for b in model.blocks:
            layers.append((_f32(b.ln_1.weight), _f32(b.ln_1.bias), *_linear(b.attn.c_attn), *_linear(b.attn.c_proj),
                           _f32(b.ln_2.weight), _f32(b.ln_2.bias), *_linear(b.mlp.c_fc), *_linear(b.mlp.c_proj)))
        head_q, head_scale, _ = _linear(model.lm_head)
        cos, sin = model.rotary.cos, model.rotary.sin
        self.max_pos = cos.shape[0]
        self.vocab = c.vocab_size
        self.decoder = Decoder(c.n_embd, c.n_head, c.vocab_size, self.max_pos, float(model.ln_f.eps),
                               _f32(model.wte.weight), head_q, head_scale, _f32(model.ln_f.weight),
                               _f32(model.ln_f.bias), _f32(cos), _f32(sin), layers)
        self._views: tuple[torch.Tensor, np.ndarray | None, np.ndarray] | None = None

    def _arrays(self, cache: KVCache) -> tuple[np.ndarray | None, np.ndarray]:
        """numpy views of the cache's keys/values (None where the C step cannot use them) and its token ids,
        kept while the cache's tensors are the same."""
        views = self._views  # read once: another thread may be decoding with its own cache
        if views is None or views[0] is not cache.kv:
            kv = cache.kv
            usable = kv.shape[2] == 1 and kv.dtype == torch.float32 and kv.is_contiguous()
            views = self._views = (kv, kv.numpy() if usable else None, cache.tokens.numpy())
        return views[1], views[2]

    def step(self, token: int, cache: KVCache, extra: Sequence[int] | None = None) -> torch.Tensor:
        """Append one token to a batch-1 cache and return the logits after it, (vocab,)."""
        pos = cache.length
        kv, tokens = self._arrays(cache)
        if kv is None or pos + 1 > kv.shape[4] or pos >= self.max_pos:
            return self.model.step(torch.tensor([[token]]), cache)[0]
        logits = np.empty(self.vocab, dtype=np.float32)
        self.decoder.step(int(token), pos, kv, logits)
        tokens[0, pos] = token
        cache.length = pos + 1
        return torch.from_numpy(logits)


def int8_torch_copy(model: GPT) -> torch.nn.Module:
    """torch's dynamic-int8 copy of the Linear layers, for the fallback; the fp32 model where this build has
    no quantized engine."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear},
                                                          dtype=torch.qint8)
    except (AttributeError, RuntimeError, NotImplementedError):
        return model


def stepper(model: GPT, quantize: bool = True) -> tuple[torch.nn.Module, CStep | FastStep]:
    """(what runs the prompt's prefill, what runs each token after it) for live decoding.

    ``quantize``: int8 weights (the C step, else torch's dynamic int8); False: the fp32 model as trained.
    """
    if not quantize:
        return model, FastStep(model)
    if Decoder is not None and not model.config.n_extra:
        return model, CStep(model)
    runner = int8_torch_copy(model)
    return runner, FastStep(runner)
