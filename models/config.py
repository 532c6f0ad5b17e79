"""A model's settings as they travel in a checkpoint's metadata: a dataclass to and from a plain dict (no torch)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, TypeVar

C = TypeVar("C", bound="SavedConfig")


class SavedConfig:
    """Mixed into a model's config dataclass: `to_dict` for the checkpoint, `from_dict` back, where a key the
    dataclass does not know (a setting of a newer or older version) is left out."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
        return cls(**{k: v for k, v in d.items() if k in fields})
