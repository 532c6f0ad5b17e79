"""A checkpoint read without torch: its weights as numpy arrays, for the real-time process, which never imports
torch (docs/ARCHITECTURE.md, "Processes"); and the checks every checkpoint load makes (models/checkpoint.py
loads with torch and makes the same ones through `checked_meta`).

The file is the one `models.checkpoint.save_checkpoint` writes (`torch.save`'s zip: a pickle of plain types and
tensors, each tensor's bytes in a member of its own). Only the handful of names such a pickle refers to are
resolved, so a crafted file cannot run code, as with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MAX_FILE_BYTES = 256 << 20  # shipped checkpoints are at most 16 MB
_DTYPES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
           "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class CheckpointFileError(ValueError):
    """A checkpoint is missing, corrupt, of the wrong kind or of an incompatible version (message names the file)."""


def checked_path(path: str | os.PathLike[str]) -> Path:
    """The checkpoint's path if it can be one; CheckpointFileError saying what it is instead."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.pt"))
        hint = f" (it holds {', '.join(inside[:3])}{', ...' if len(inside) > 3 else ''})" if inside else ""
        raise CheckpointFileError(f"checkpoint {path} is a folder, not a checkpoint: give the path of the .pt "
                                  f"file{hint}")
    if not path.is_file():
        raise CheckpointFileError(f"checkpoint {path} does not exist: train one (companion train ...) "
                                  "or give the path of an existing file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise CheckpointFileError(f"checkpoint {path} is {path.stat().st_size >> 20} MB, larger than any Companion "
                                  f"checkpoint (at most {MAX_FILE_BYTES >> 20} MB): give the .pt file of a model")
    return path


def what_it_is(path: Path) -> str:
    """What a file that is no checkpoint is, from its first bytes."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if head == b"MThd":
        return "is a MIDI file, not a checkpoint"
    if head[:2] == b"PK":
        return "is damaged (a PyTorch file whose contents do not load)"
    return "is not a checkpoint (not a file PyTorch saved)" if head else "is empty (0 bytes), not a checkpoint"


def unreadable(path: Path) -> CheckpointFileError:
    """The error for a file whose contents do not load, in words (a library's own text means nothing to a player)."""
    return CheckpointFileError(f"checkpoint {path} {what_it_is(path)}; give a .pt file made by `companion train` "
                               "(or leave the checkpoint out for the shipped one)")


def checked_meta(path: Path, obj: Any, kind: str) -> dict[str, Any]:
    """The metadata of a loaded checkpoint object, checked: Companion's layout, a version we read, the kind asked."""
    if not isinstance(obj, dict) or not isinstance(obj.get("meta"), dict) or not isinstance(
            obj.get("state_dict"), dict):
        raise CheckpointFileError(f"checkpoint {path} is not a Companion checkpoint (no meta/state_dict)")
    meta = obj["meta"]
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointFileError(f"checkpoint {path} has format version {version!r}, this Companion reads up "
                                  f"to {FORMAT_VERSION}: update Companion or re-train the model")
    if meta.get("kind") != kind:
        raise CheckpointFileError(f"checkpoint {path} holds a {meta.get('kind')!r} model, not a {kind!r} model: "
                                  "give the checkpoint made for this model")
    for section in ("model_config", "tokenizer_config"):
        if not isinstance(meta.get(section), dict):
            raise CheckpointFileError(f"checkpoint {path} has no {section} table in its metadata: it was not written "
                                      "by Companion; re-train it or give another checkpoint")
    return meta


def not_a_tensor(path: Path, name: str) -> CheckpointFileError:
    return CheckpointFileError(f"checkpoint {path} is corrupt: weight {name!r} is not a tensor")


def not_finite(path: Path, name: str) -> CheckpointFileError:
    return CheckpointFileError(f"checkpoint {path} is damaged: weight {name!r} holds NaN or infinite values "
                               "(training diverged?); re-train it or give another checkpoint")


def load_arrays(path: str | os.PathLike[str], *, kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(weights as numpy arrays, floating ones in float32; meta), checked as `models.checkpoint.load_checkpoint`
    checks them; CheckpointFileError naming the file and what is wrong."""
    path = checked_path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            obj = _Unpickler(archive).load()
    except (pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError, TypeError,
            EOFError, AttributeError) as err:
        raise unreadable(path) from err
    meta = checked_meta(path, obj, kind)
    state = {}
    for name, array in obj["state_dict"].items():
        if not isinstance(array, np.ndarray):
            raise not_a_tensor(path, name)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
            if not np.isfinite(array).all():
                raise not_finite(path, name)
        state[name] = array
    return state, meta


class _Unpickler(pickle.Unpickler):
    """torch.save's pickle with its tensors rebuilt as numpy arrays; nothing else may be named."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        [pkl] = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        self._archive, self._prefix = archive, pkl[: -len("data.pkl")]
        byteorder = self._prefix + "byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise ValueError("a big-endian checkpoint")
        self._storages: dict[str, np.ndarray] = {}
        super().__init__(io.BytesIO(archive.read(pkl)))

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return name  # the storage's type, read by persistent_load
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid: Any) -> np.ndarray:
        kind, storage_type, key, _location, count = pid
        if kind != "storage" or storage_type not in _DTYPES:
            raise pickle.UnpicklingError(f"unknown storage {pid!r:.60}")
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=_DTYPES[storage_type], count=int(count))
        return self._storages[key]


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                    *_: Any) -> np.ndarray:
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    end = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if min(size) == 0:
        return np.zeros(size, dtype=storage.dtype)
    if end > len(storage):
        raise ValueError("a tensor runs past its storage")
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=[s * item for s in stride])
    return view.copy()
