"""The error hierarchy: every error a musician can cause carries a title and a message they can act on."""

from __future__ import annotations


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


class InputFileError(CompanionError):
    """A MIDI (or other) input file is missing, empty or corrupt."""

    title = "Input file error"


class UsageError(CompanionError):
    """A command-line option is out of range or does not fit the command; the message names the flag and its range."""

    title = "Usage error"
