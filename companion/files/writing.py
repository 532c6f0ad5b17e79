"""Writing the files we make (MIDI, take sidecars, journals): regular files only, whole or not at all."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from companion.errors import OutputFileError

_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def regular_target(path: str | os.PathLike[str]) -> Path:
    """The file a write to `path` lands in: a symbolic link's target (the link stays), `path` itself otherwise.

    OutputFileError if that is anything but a regular file or a new name (a device such as /dev/null, a FIFO,
    a socket, a folder): Companion never replaces or writes into such a file."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as err:
        raise OutputFileError.cannot_write(path, err) from None
    if stat.S_ISREG(mode):
        return target
    kind = next((word for test, word in _KINDS if test(mode)), "not a regular file")
    via = f" (the link {path} points to {target})" if target != path else ""
    raise OutputFileError(f"{target}: is {kind}{via}; Companion writes only regular files: give a file name, "
                          "e.g. out.mid")


def write_atomically(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """`write` into a new temporary file beside the target, synced, then renamed over it: a crash, a full disk
    or an error never leaves half a file nor a temporary one; the target must be a regular file or new.

    Returns the path written (a link's target). A failed write raises OutputFileError naming the file and what
    to do; other exceptions from `write` pass through (the temporary file removed all the same)."""
    target = regular_target(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise OutputFileError.cannot_write(target, err) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode(target))
        os.replace(tmp, target)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # cannot be removed either: say the first failure
        if isinstance(err, OSError) and not isinstance(err, OutputFileError):
            raise OutputFileError.cannot_write(target, err) from None
        raise
    return target


def _file_mode(target: Path) -> int:
    """An existing file keeps its permissions; a new one is readable by all (mkstemp makes it private)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o644
