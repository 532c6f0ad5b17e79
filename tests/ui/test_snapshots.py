"""Snapshot tests of the screens at a fixed terminal size (pytest-textual-snapshot; update with --snapshot-update)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from companion import presets
from companion.presets import PresetInfo
from companion.tui.app import CompanionApp

from .conftest import SIZE, FakeRuntime, scripted_snapshot


def test_main_screen(snap_compare: Callable[..., bool], make_app: Callable[..., CompanionApp]) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE)


def test_main_screen_with_a_lost_port_recording_and_learning(snap_compare: Callable[..., bool],
                                                            fake_clock: Callable[[], int]) -> None:
    snap = scripted_snapshot()
    snap["ports"]["lost"] = ["Keystep 37"]
    snap["recording"] = True
    snap["engine"]["cc_map"] = {"density": [0, 74]}
    snap["lateness"]["p99_ns"] = 14_000_000
    app = CompanionApp(FakeRuntime(snap), clock_ns=fake_clock)
    assert snap_compare(app, terminal_size=SIZE, press=["down", "down", "c", "x", "j"])


def test_help_screen(snap_compare: Callable[..., bool], make_app: Callable[..., CompanionApp]) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, press=["question_mark"])


def test_preset_browser(snap_compare: Callable[..., bool], make_app: Callable[..., CompanionApp],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    infos = [PresetInfo("trading-fours", "trading-fours", "Four bars each.", "shipped", Path("trading-fours.toml")),
             PresetInfo("chorale", "chorale", "Four-part harmony under your melody.", "user", Path("chorale.toml"))]
    monkeypatch.setattr(presets, "list_presets", lambda: infos)
    assert snap_compare(make_app(), terminal_size=SIZE, press=["b"])
