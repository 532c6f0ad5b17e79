"""The one checkpoint saver and loader for every model: plain types + tensors, fp16 on disk, safe to load."""

from __future__ import annotations

import itertools
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from models.checkpoint_numpy import (  # noqa: F401 - CheckpointFileError and FORMAT_VERSION are used from here too
    FORMAT_VERSION,
    CheckpointFileError,
    checked_meta,
    checked_path,
    not_a_tensor,
    not_finite,
    unreadable,
)

_PLAIN = (str, int, float, bool, type(None))
MAX_MODEL_BYTES = 1 << 30  # the weights and tables a checkpoint's config may ask us to allocate
T = TypeVar("T")
# What building from a damaged or crafted config raises: wrong types, missing keys, sizes that do not divide.
CONFIG_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, AssertionError, ZeroDivisionError,
                 OverflowError, RuntimeError)


def _check_plain(value: Any, where: str) -> Any:
    """Return ``value`` as plain types (dict/list/str/int/float/bool/None); tuples become lists."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [_check_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint metadata key {where}.{k!r} must be a string")
            out[k] = _check_plain(v, f"{where}.{k}")
        return out
    raise TypeError(f"checkpoint metadata {where} has a {type(value).__name__}; only plain types are stored")


def _state_dict_of(model: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(model, dict):
        return model
    inner = getattr(model, "module", model)  # DistributedDataParallel
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile
    return inner.state_dict()


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module | dict[str, torch.Tensor], *, kind: str,
                    model_config: dict[str, Any], tokenizer_config: dict[str, Any], data: dict[str, Any],
                    metrics: dict[str, Any], extra: dict[str, Any] | None = None, half: bool = True) -> Path:
    """Write a checkpoint atomically (temp file + os.replace); floating weights stored as fp16 when ``half``."""
    path = Path(path)
    state: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for name, tensor in _state_dict_of(model).items():
        # tied weights appear twice in a state dict; store each storage once under its first name
        key = tensor.data_ptr()
        if key in seen and tensor.numel() and seen[key] != name:
            continue
        seen[key] = name
        t = tensor.detach().to("cpu")
        if half and t.is_floating_point():
            t = t.to(torch.float16)
        state[name] = t.contiguous().clone()
    meta = _check_plain({
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "model_config": model_config,
        "tokenizer_config": tokenizer_config,
        "data": data,
        "metrics": metrics,
        "extra": extra or {},
        "weights_dtype": "float16" if half else "float32",
    }, "meta")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"meta": meta, "state_dict": state}, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is a shareable file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str], *, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load (state_dict in fp32, meta); raise CheckpointFileError naming the file and what is wrong."""
    path = checked_path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            AttributeError, KeyError, IndexError) as err:
        raise unreadable(path) from err
    meta = checked_meta(path, obj, kind)
    state = {}
    for name, t in obj["state_dict"].items():
        if not isinstance(t, torch.Tensor):
            raise not_a_tensor(path, name)
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise not_finite(path, name)
        state[name] = t.float() if t.is_floating_point() else t
    return state, meta


def from_config(path: str | os.PathLike[str], section: str, build: Callable[[], T]) -> T:
    """`build()` (a config, a tokenizer, a model made from a checkpoint's metadata); CheckpointFileError naming
    the file and the section for what a damaged or crafted config makes it raise."""
    try:
        return build()
    except CheckpointFileError:
        raise
    except CONFIG_ERRORS as err:
        raise CheckpointFileError(f"checkpoint {path}: its {section} is damaged ({type(err).__name__}: "
                                  f"{str(err)[:200]}); re-train it or give another checkpoint") from None


class _NoInitOnMeta(TorchFunctionMode):
    """Weight initialisation skipped while a model is built on the meta device for its shapes: meta tensors hold no
    values, and the first such call imports torch's meta kernels (2.6 s of a 2.9 s cold load on the 2-core VM)."""

    SKIPPED = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.zero_, torch.Tensor.fill_,
                         *(getattr(nn.init, name) for name in ("normal_", "uniform_", "zeros_", "ones_", "constant_",
                                                               "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                                                               "xavier_normal_", "trunc_normal_", "orthogonal_"))})

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        tensor = args[0] if args else kwargs.get("tensor")  # nn.init passes it by name
        if func in self.SKIPPED and isinstance(tensor, torch.Tensor) and tensor.is_meta:
            return tensor
        return func(*args, **kwargs)


def build_model(path: str | os.PathLike[str], make: Callable[[], nn.Module],
                state: dict[str, torch.Tensor]) -> nn.Module:
    """The model `make()` builds from a checkpoint's model_config, holding the checkpoint's weights.

    It is built first on torch's meta device (no memory): a config that describes no model, or one larger than
    MAX_MODEL_BYTES, or whose weights do not have the stored shapes, is a CheckpointFileError before anything
    is allocated."""
    with torch.device("meta"), _NoInitOnMeta():
        shape = from_config(path, "model_config", make)
    size = sum(t.numel() * t.element_size() for t in itertools.chain(shape.parameters(), shape.buffers()))
    if size > MAX_MODEL_BYTES:
        raise CheckpointFileError(f"checkpoint {path}: its model_config describes a model of {size / 2**30:.1f} GB, "
                                  f"more than the {MAX_MODEL_BYTES >> 30} GB Companion loads; it is damaged or not "
                                  "made for Companion")
    expected = shape.state_dict()
    for name, tensor in state.items():
        if name in expected and tuple(expected[name].shape) != tuple(tensor.shape):
            raise CheckpointFileError(f"checkpoint {path} does not fit its own model_config: weight {name!r} has "
                                      f"shape {tuple(tensor.shape)}, the config makes {tuple(expected[name].shape)}")
    model = from_config(path, "model_config", make)  # values the shapes did not need can still be wrong
    load_into(model, state, path)
    return model


def load_into(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Load weights saved by ``save_checkpoint`` (tied copies omitted) into ``model``; clear error on mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    # a missing name is fine only when it shares storage with a loaded one (weight tying)
    ptr_to_name = {}
    for k, t in own.items():
        ptr_to_name.setdefault(t.data_ptr(), k)
    really_missing = [k for k in missing if ptr_to_name[own[k].data_ptr()] == k or
                      ptr_to_name[own[k].data_ptr()] not in state]
    unexpected = [k for k in state if k not in own]
    if really_missing or unexpected:
        raise CheckpointFileError(f"checkpoint {path} does not fit this model (missing {really_missing[:3]}, "
                                  f"unexpected {unexpected[:3]}): it was made by another version")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise CheckpointFileError(f"checkpoint {path} does not fit this model: {str(err)[:300]}") from err
