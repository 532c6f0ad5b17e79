"""Reading the small text files a user hands us (presets, take sidecars): regular files only, bounded in size."""

from __future__ import annotations

import os
import stat


class NotReadable(ValueError):
    """The file is not a regular file, or is larger than we read; the text says which, for the caller's message."""


def read_bounded(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The file's bytes; NotReadable for a device, a FIFO, a socket or a folder (never opened for long: a FIFO
    with no writer would wait forever) or a file over `max_bytes` (/dev/zero would fill the memory).

    OSError (FileNotFoundError, PermissionError...) passes through for the caller's own message."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO opens at once instead of waiting
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a device, a FIFO or a socket"
            raise NotReadable(f"is {kind}, not a regular file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise NotReadable(f"is larger than {max_bytes // 1024} KB, more than such a file ever holds")
    return data


def nesting_depth(value: object, limit: int) -> int:
    """How deeply lists and tables nest in parsed JSON or TOML (iteratively: no recursion on hostile input),
    counting no further than `limit` + 1."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
    return deepest


