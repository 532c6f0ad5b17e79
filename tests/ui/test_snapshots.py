"""Snapshot tests of the screens at a fixed terminal size (pytest-textual-snapshot; update with --snapshot-update)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from companion.presets import preset
from companion.presets.preset import PresetInfo
from companion.tui.app import CompanionApp

from .conftest import SIZE, SMALL, FakeRuntime, scripted_snapshot


def test_main_screen(snap_compare: Callable[..., bool], make_app: Callable[..., CompanionApp]) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE)


def _busy_snapshot() -> dict:
    snap = scripted_snapshot()
    snap["ports"]["lost"] = ["Keystep 37"]
    snap["recording"] = True
    snap["engine"]["cc_map"] = {"density": [0, 74], "key_lock": [15, 127]}  # the longest CC label: no wrap
    snap["lateness"]["p99_ns"] = 14_000_000
    snap["log"] = [("info", "answering with the markov model"),
                   ("warning", "port Keystep 37 was lost; it is re-opened when it returns")]
    return snap


@pytest.mark.parametrize("size", [SIZE, SMALL], ids=["140x42", "80x24"])
def test_main_screen_with_a_lost_port_recording_and_learning(snap_compare: Callable[..., bool],
                                                            fake_clock: Callable[[], int],
                                                            size: tuple[int, int]) -> None:
    """At 140x42 no control row wraps; at 80x24 the preset line, REC, every meter, the log and the hint show."""
    app = CompanionApp(FakeRuntime(_busy_snapshot()), clock_ns=fake_clock)
    assert snap_compare(app, terminal_size=size, press=["down", "down", "down", "c", "x", "j"])


def test_help_screen_at_80x24(snap_compare: Callable[..., bool], make_app: Callable[..., CompanionApp]) -> None:
    assert snap_compare(make_app(), terminal_size=SMALL, press=["question_mark"])


def test_help_screen(snap_compare: Callable[..., bool], make_app: Callable[..., CompanionApp]) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, press=["question_mark"])


def test_preset_browser(snap_compare: Callable[..., bool], make_app: Callable[..., CompanionApp],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    infos = [PresetInfo("trading-fours", "trading-fours", "Four bars each.", "shipped", Path("trading-fours.toml")),
             PresetInfo("chorale", "chorale", "Four-part harmony under your melody.", "user", Path("chorale.toml"))]
    monkeypatch.setattr(preset, "list_presets", lambda: infos)
    assert snap_compare(make_app(), terminal_size=SIZE, press=["b"])


@pytest.mark.parametrize("size", [SIZE, SMALL], ids=["140x42", "80x24"])
def test_nothing_is_cut_off_or_wrapped(size: tuple[int, int], fake_clock: Callable[[], int],
                                       run_pilot: Callable[..., None]) -> None:
    app = CompanionApp(FakeRuntime(_busy_snapshot()), clock_ns=fake_clock)

    async def scenario(pilot: Any) -> None:
        await pilot.press("down", "down", "down", "c")  # learning the key lock, whose row is the longest
        await pilot.pause()
        transport = app.transport.render().plain.splitlines()
        assert len(transport) == 3 and all(len(line) <= size[0] for line in transport), transport
        assert "trading-fours" in transport[2] and "call_response" in transport[2] and "REC" in "".join(transport)
        width = app.controls.size.width
        rows = app.controls.render().plain.splitlines()
        assert all(len(row) <= width for row in rows), [row for row in rows if len(row) > width]
        assert all(len(line) <= app.meters.size.width for line in app.meters.render().plain.splitlines())
        assert app.log_pane.size.width >= 16 and app.log_pane.lines_shown == 2
        hint = app.query_one("#short-hint" if size == SMALL else "#hint")
        assert hint.display and len(str(hint.render())) <= size[0]

    run_pilot(app, scenario, size=size)
