"""A small decoder-only Transformer (nanoGPT-style) with rotary positions and a KV cache; no I/O."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GPTConfig:
    """Model shape; stored in every checkpoint (``asdict``) and rebuilt with ``GPTConfig.from_dict``."""

    vocab_size: int
    block_size: int = 1024  # longest context the model attends to (tokens)
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 256
    dropout: float = 0.1
    bias: bool = False
    rope_base: float = 10000.0
    # Sizes of optional extra per-token embedding tables (e.g. voice index, position in the beat,
    # style tag). ``extra[..., i]`` indexes table ``i``; the embeddings are added to the token embedding.
    n_extra: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        self.n_extra = tuple(int(n) for n in self.n_extra)
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if (self.n_embd // self.n_head) % 2 != 0:
            raise ValueError("head size (n_embd / n_head) must be even for rotary positions")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["n_extra"] = list(self.n_extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Rotary(nn.Module):
    """Rotary position tables; ``rotate`` turns the (q, k) pairs of each head by their position."""

    def __init__(self, head_size: int, max_positions: int, base: float) -> None:
        super().__init__()
        if torch.empty(0).is_meta:  # built for its shapes only (checkpoint.build_model): tables of the right size
            # and no values (the first meta computation imports torch's meta kernels: 3 s of a cold load)
            half = head_size // 2
            for name, shape in (("inv_freq", (half,)), ("cos", (max_positions, half)), ("sin", (max_positions, half))):
                self.register_buffer(name, torch.empty(shape), persistent=False)
            return
        inv_freq = 1.0 / (base ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._build(max_positions)

    def _build(self, n: int) -> None:
        t = torch.arange(n, dtype=torch.float32, device=self.inv_freq.device)
        freqs = torch.outer(t, self.inv_freq)  # (n, hs/2)
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)

    def tables(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for positions start..start+length-1, each (length, hs/2)."""
        if start + length > self.cos.shape[0]:
            self._build(max(2 * self.cos.shape[0], start + length))
        return self.cos[start : start + length], self.sin[start : start + length]

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x: (..., T, hs) with the two halves of hs as (real, imaginary); cos/sin: (T, hs/2)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class KVCache:
    """Keys and values of every layer for incremental decoding: (n_layer, 2, B, n_head, capacity, hs).

    ``length`` tokens are cached; rotary positions continue from ``length``. ``truncate(n)`` rolls back and
    ``copy()`` forks. The token ids (and extra indices) are kept too, so that ``GPT.slide`` can rebuild the
    cache over the most recent tokens exactly when it is full.
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, head_size: int, capacity: int, n_extra: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.kv = torch.zeros(n_layer, 2, batch, n_head, capacity, head_size, device=device, dtype=dtype)
        self.tokens = torch.zeros(batch, capacity, dtype=torch.long, device=device)  # (B, capacity)
        self.extra = torch.zeros(batch, capacity, n_extra, dtype=torch.long, device=device)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.kv.shape[4]

    def truncate(self, n: int) -> None:
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} tokens to {n}")
        self.length = n

    def copy(self) -> KVCache:
        other = KVCache.__new__(KVCache)
        other.kv = self.kv.clone()
        other.tokens = self.tokens.clone()
        other.extra = self.extra.clone()
        other.length = self.length
        return other


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with rotary q/k and an optional KV cache."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                layer_cache: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        B, T, C = x.shape  # (B, T, C)
        hs = C // self.n_head
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, hs).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        qk = Rotary.rotate(qkv[:2], cos, sin)  # (2, B, nh, T, hs)
        q, k, v = qk[0], qk[1], qkv[2]
        if layer_cache is None:
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, nh, T, hs)
        else:
            # layer_cache: (2, B, nh, capacity, hs); append, then attend to everything cached so far
            layer_cache[0, :, :, start : start + T] = k
            layer_cache[1, :, :, start : start + T] = v
            keys = layer_cache[0, :, :, : start + T]
            values = layer_cache[1, :, :, : start + T]
            if T == 1:
                y = F.scaled_dot_product_attention(q, keys, values)
            else:
                # query i (absolute start+i) may see keys 0..start+i
                mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
                y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward block (4x expansion, GELU)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                layer_cache: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cos, sin, layer_cache, start)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only Transformer: token (+ extra) embeddings -> blocks -> tied LM head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.extra_emb = nn.ModuleList(nn.Embedding(n, config.n_embd) for n in config.n_extra)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.rotary = Rotary(config.n_embd // config.n_head, config.block_size, config.rope_base)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # scaled init of residual projections (GPT-2)
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _embed(self, idx: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        x = self.wte(idx)  # (B, T, C)
        if len(self.extra_emb):
            if extra is None or extra.shape[-1] != len(self.extra_emb):
                raise ValueError(f"this model needs extra indices of shape (B, T, {len(self.extra_emb)})")
            for i, emb in enumerate(self.extra_emb):
                x = x + emb(extra[..., i])
        return x

    def hidden(self, idx: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Final normalized hidden states (B, T, C) for idx (B, T); for models that bring their own head."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds block_size {self.config.block_size}")
        cos, sin = self.rotary.tables(0, T)
        x = self.drop(self._embed(idx, extra))
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.ln_f(x)  # (B, T, C)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) token ids; targets (B, T) with -1 = ignore; extra (B, T, len(n_extra)).

        Returns logits (B, T, vocab) and the mean cross-entropy over non-ignored targets (or None).
        """
        logits = self.lm_head(self.hidden(idx, extra))  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                                   ignore_index=-1)
        return logits, loss

    def new_cache(self, batch: int = 1, capacity: int | None = None) -> KVCache:
        """An empty KV cache for ``step``; capacity defaults to block_size."""
        c = self.config
        p = self.wte.weight
        return KVCache(c.n_layer, batch, c.n_head, c.n_embd // c.n_head, capacity or c.block_size,
                       len(c.n_extra), p.device, p.dtype)

    def slide(self, cache: KVCache, keep: int) -> None:
        """Rebuild the cache from its last ``keep`` tokens (positions restart at 0); exact, costs a prefill."""
        keep = max(0, min(keep, cache.length))
        tokens = cache.tokens[:, cache.length - keep : cache.length].clone()
        extra = cache.extra[:, cache.length - keep : cache.length].clone()
        cache.length = 0
        if keep:
            self.step_hidden(tokens, cache, extra if len(self.extra_emb) else None)

    def step_hidden(self, idx: torch.Tensor, cache: KVCache, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Append tokens idx (B, T) to the cache; return their final hidden states (B, T, C).

        When the cache is full it slides: the oldest quarter is dropped and the rest re-encoded (a prefill,
        so a caller with a deadline should call ``slide`` itself at a quiet moment).
        """
        B, T = idx.shape
        if T > cache.capacity:
            raise ValueError(f"cannot append {T} tokens to a cache of capacity {cache.capacity}")
        if cache.length + T > cache.capacity:
            self.slide(cache, cache.capacity - T - cache.capacity // 4)
        start = cache.length
        cache.tokens[:, start : start + T] = idx
        if extra is not None and len(self.extra_emb):
            cache.extra[:, start : start + T] = extra
        cos, sin = self.rotary.tables(start, T)
        x = self._embed(idx, extra)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache.kv[i], start)
        cache.length = start + T
        return self.ln_f(x)  # (B, T, C)

    def step(self, idx: torch.Tensor, cache: KVCache, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Append tokens idx (B, T) to the cache and return the logits after the last one, (B, vocab)."""
        return self.lm_head(self.step_hidden(idx, cache, extra)[:, -1, :])  # (B, vocab)

    def configure_optimizer(self, weight_decay: float, lr: float, betas: tuple[float, float] = (0.9, 0.95),
                            fused: bool = False) -> torch.optim.AdamW:
        """AdamW with decay on matrices only (not on norms, biases)."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


# Layers FastStep may run in fp32 (from the int8 layer's own weights) on a quantized model: on their own, the
# 256x256 attention output and the 256x329 head are faster in fp32 at batch 1 (8-12 us vs 12-20 us int8 on the
# 2-core dev VM, one thread), but inside a whole decoding step, where every layer's weights pass through the
# caches, neither paid (fp32 weights are 4x the bytes): per step 665-680 us all int8, 680-715 us with either or
# both in fp32. So none by default; the option stays for machines where it measures otherwise.
FULL_PRECISION_LAYERS: tuple[str, ...] = ()


def _linear_fn(module: nn.Module, full_precision: bool = False) -> Any:
    """A plain function computing ``module(x)`` for an nn.Linear or its dynamic-int8 copy, minus module overhead.

    ``full_precision``: an int8 layer runs as an fp32 matmul of its dequantized weights (same weights, fp32
    activations) instead of the dynamic-quantized kernel.
    """
    packed = getattr(module, "_packed_params", None)
    if packed is not None and getattr(packed, "dtype", None) == torch.qint8:
        if full_precision:
            weight = module.weight().dequantize().contiguous()
            bias = module.bias()
            return lambda x: F.linear(x, weight, bias)
        overload = torch.ops.quantized.linear_dynamic.default
        op, params = getattr(overload, "_op", overload), packed._packed_params  # the bare kernel: no Python checks
        reduce = not (module.version is None or module.version < 4)  # as DynamicQuantizedLinear.forward
        return lambda x: op(x, params, reduce)
    if type(module) is nn.Linear:
        weight, bias = module.weight, module.bias
        return lambda x: F.linear(x, weight, bias)
    return module  # anything else: call it as it is


class FastStep:
    """Lean single-token decoding (batch 1) on a ``GPT`` or its dynamic-quantized copy: the same maths as
    ``GPT.step`` on one token, without the per-module call overhead.

    Weights are looked up once; rotary tables are precomputed as full-width cos and signed sin; the KV cache is
    the ordinary ``KVCache`` (so a prefill with ``GPT.step`` and ``step`` here can be mixed freely). Anything
    outside the fast case (cache full, positions beyond the rotary table) goes through ``model.step``.
    """

    def __init__(self, model: nn.Module, full_precision: Collection[str] = FULL_PRECISION_LAYERS) -> None:
        self.model = model
        fp = set(full_precision)
        c: GPTConfig = model.config
        self.n_head, self.head_size = c.n_head, c.n_embd // c.n_head
        self.n_embd = c.n_embd
        self.wte = model.wte.weight.detach()
        self.extra_w = [e.weight.detach() for e in model.extra_emb]
        cos, sin = model.rotary.cos, model.rotary.sin  # (n, hs/2)
        # rotate(x) = x * cos + swap_halves(x) * sin, applied to q, k and v at once: row 0 (queries) also carries
        # the attention scale, row 2 (values) passes unchanged (cos 1, sin 0)
        scale = torch.tensor([1.0 / math.sqrt(self.head_size), 1.0, 0.0]).view(1, 3, 1, 1)
        ones = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
        self.cos = torch.cat((cos, cos), dim=-1).unsqueeze(1).unsqueeze(1) * scale + ones  # (n, 3, 1, hs)
        self.sin = torch.cat((-sin, sin), dim=-1).unsqueeze(1).unsqueeze(1) * scale
        self.layers = []
        for b in model.blocks:
            self.layers.append((b.ln_1.weight, b.ln_1.bias, b.ln_1.eps, _linear_fn(b.attn.c_attn, "attn.c_attn" in fp),
                                _linear_fn(b.attn.c_proj, "attn.c_proj" in fp), b.ln_2.weight, b.ln_2.bias, b.ln_2.eps,
                                _linear_fn(b.mlp.c_fc, "mlp.c_fc" in fp), _linear_fn(b.mlp.c_proj, "mlp.c_proj" in fp)))
        self.ln_f = (model.ln_f.weight, model.ln_f.bias, model.ln_f.eps)
        self.lm_head = _linear_fn(model.lm_head, "lm_head" in fp)
        self._views: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    def _layer_views(self, cache: KVCache) -> list[torch.Tensor]:
        """(2, n_head, capacity, hs) views of each layer of batch row 0, kept while the cache tensor is the same."""
        views = self._views  # read once: another thread may be decoding with its own cache
        if views is None or views[0] is not cache.kv:
            views = self._views = (cache.kv, [cache.kv[i, :, 0] for i in range(cache.kv.shape[0])])
        return views[1]

    def step(self, token: int, cache: KVCache, extra: Sequence[int] | None = None) -> torch.Tensor:
        """Append one token to a batch-1 cache and return the logits after it, (vocab,)."""
        pos = cache.length
        if (cache.kv.shape[2] != 1 or pos + 1 > cache.capacity or pos >= self.cos.shape[0]
                or (self.extra_w and extra is None)):
            ex = None if extra is None else torch.tensor([[list(extra)]])
            return self.model.step(torch.tensor([[token]]), cache, ex)[0]
        cache.tokens[0, pos] = token
        x = self.wte[token : token + 1]  # (1, C)
        if self.extra_w:
            cache.extra[0, pos] = torch.tensor(list(extra))
            for w, i in zip(self.extra_w, extra, strict=True):
                x = x + w[i : i + 1]
        nh, hs, C = self.n_head, self.head_size, self.n_embd
        cos, sin = self.cos[pos], self.sin[pos]
        n = pos + 1
        layer_norm, bmm, addcmul, gelu = torch.layer_norm, torch.bmm, torch.addcmul, F.gelu
        for (w1, b1, e1, qkv_fn, proj_fn, w2, b2, e2, fc_fn, out_fn), kv in zip(
                self.layers, self._layer_views(cache), strict=True):
            qkv = qkv_fn(layer_norm(x, (C,), w1, b1, e1)).view(3, nh, hs)
            rot = addcmul(qkv * cos, qkv.view(3, nh, 2, hs // 2).flip(2).view(3, nh, hs), sin)  # (q, k, v)
            kv[:, :, pos] = rot[1:]
            att = bmm(rot[0].unsqueeze(1), kv[0, :, :n].transpose(1, 2)).softmax(-1)  # (nh, 1, n)
            x = x + proj_fn(bmm(att, kv[1, :, :n]).view(1, C))
            x = x + out_fn(gelu(fc_fn(layer_norm(x, (C,), w2, b2, e2))))
        cache.length = n
        w, b, e = self.ln_f
        return self.lm_head(layer_norm(x, (C,), w, b, e))[0]  # (vocab,)
