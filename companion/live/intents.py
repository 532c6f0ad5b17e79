"""Intents a UI posts (over the session socket) that the engine's own intents do not cover; the runtime wires them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChoosePorts:
    """Re-open the MIDI ports: a named port (substring, as `--in-port`) or None for the virtual one."""

    in_port: str | None
    out_port: str | None
    backend: str | None = None  # None: keep the current backend


@dataclass(frozen=True, slots=True)
class Learn:
    """MIDI learn: map CC `control` on `channel` (None: any channel) to the UI control `target`.

    `target` is a setting name (e.g. "temperature"); `low`/`high` is the range CC 0..127 is scaled to, equal
    (the default) for the control's own range, on/off and choice controls. With `control` None the runtime is
    asked to arm learning and map the next CC it sees; the UI sends the full mapping when it saw the CC itself.
    """

    target: str
    control: int | None = None
    channel: int | None = None
    low: float = 0.0
    high: float = 0.0


@dataclass(frozen=True, slots=True)
class LoadPreset:
    """Switch to the preset `name` (shipped or user); the runtime refuses a bad one and keeps the current."""

    name: str


@dataclass(frozen=True, slots=True)
class SetClock:
    """Follow another clock: "internal", "external" (the DAW's MIDI clock) or "link" (an Ableton Link session)."""

    source: str


@dataclass(frozen=True, slots=True)
class SetRecording:
    """Start (True) or stop and save (False) recording takes."""

    on: bool
