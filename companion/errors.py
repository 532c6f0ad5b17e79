"""The error hierarchy: every error a musician can cause carries a title and a message they can act on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class CompanionError(Exception):
    """Base of all expected errors; the CLI prints `title: message` and exits 2."""

    title = "Companion error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class PortError(CompanionError):
    """A MIDI port could not be opened, found or used."""

    title = "MIDI port error"


class ClockError(CompanionError):
    """The clock source is misconfigured."""

    title = "Clock error"


class PresetError(CompanionError):
    """A preset file is invalid; the message names the file, the key and the fix."""

    title = "Preset error"


class CheckpointError(CompanionError):
    """A model checkpoint is missing, corrupt or incompatible."""

    title = "Checkpoint error"


@contextmanager
def checkpoint_errors() -> Iterator[None]:
    """The models' CheckpointFileError as a CheckpointError (exit 2), its message naming the file unchanged.

    Imports models.checkpoint (and torch): use it around a load that needs them anyway."""
    from models.checkpoint import CheckpointFileError

    try:
        yield
    except CheckpointFileError as err:
        raise CheckpointError(str(err)) from None


class InputFileError(CompanionError):
    """A MIDI (or other) input file is missing, empty or corrupt."""

    title = "Input file error"


class UsageError(CompanionError):
    """A command-line option is out of range or does not fit the command; the message names the flag and its range."""

    title = "Usage error"


class OutputFileError(CompanionError, OSError):
    """An output file cannot be written (no such folder, no permission, disk full); nothing half-written is left.

    An OSError too: code that catches OSError around a write (the take recorder) keeps catching it."""

    title = "Output file error"

    @classmethod
    def cannot_write(cls, path: str | os.PathLike[str], err: OSError) -> OutputFileError:
        """The error for `err` met while writing `path`: what went wrong, in words, and what to do."""
        path = Path(path)
        folder = path.parent
        if not folder.is_dir():
            return cls(f"{path}: the folder {folder} does not exist; create it or choose another output")
        if isinstance(err, IsADirectoryError) or path.is_dir():
            return cls(f"{path}: is a folder; give the name of the file to write, e.g. {path / 'out.mid'}")
        reason = err.strerror or str(err) or type(err).__name__
        return cls(f"{path}: cannot write it in {folder} ({reason}); choose a folder you can write to")


def check_range(flag: str, value: float, low: float, high: float, meaning: str = "") -> None:
    """The one range check of a numeric option: a UsageError naming the flag and its range (NaN is refused)."""
    if not low <= value <= high:
        raise UsageError(f"{flag} must be between {low:g} and {high:g}{meaning}, got {value:g}")
