"""Pilot tests: every key binding of the main screen does what the help says, through the FakeRuntime."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from companion.core.engine import ChangeSettings, PanicIntent, Regenerate, SetMode, StorePhrase, available_modes
from companion.live.intents import Learn, SetClock, SetRecording
from companion.tui.app import TERMINATION_SIGNALS, CompanionApp
from companion.tui.help_screen import HelpScreen, help_rows
from companion.tui.keyboard import DEFAULT_OCTAVE
from companion.tui.ports_screen import PortsScreen
from companion.tui.presets_screen import PresetsScreen

from .conftest import FakeRuntime, wait_until

# key -> what the FakeRuntime must have seen after the key alone.
EXPECTED_INTENTS: dict[str, Callable[[list[object]], bool]] = {
    "space": lambda i: i == [PanicIntent()],
    "r": lambda i: i == [SetRecording(True)],
    "n": lambda i: i == [Regenerate(new_seed=True)],
    "N": lambda i: i == [Regenerate(new_seed=False)],
    "v": lambda i: i == [StorePhrase()],
    "m": lambda i: len(i) == 1 and isinstance(i[0], SetMode) and i[0].name in available_modes(),
    "M": lambda i: len(i) == 1 and isinstance(i[0], SetMode) and i[0].name in available_modes(),
    # In this order: the FakeRuntime applies each change, so each key starts where the last one left off.
    "right": lambda i: i == [ChangeSettings({"temperature": 1.05})],
    "equals_sign": lambda i: i == [ChangeSettings({"temperature": 1.1})],
    "left": lambda i: i == [ChangeSettings({"temperature": 1.05})],
    "minus": lambda i: i == [ChangeSettings({"temperature": 1.0})],
    "c": lambda i: i == [Learn("temperature", None, None, 0.1, 2.0)],
    "ctrl+k": lambda i: i == [SetClock("external")],  # the snapshot's clock is internal: the next one
}
EXPECTED_SCREENS = {"b": PresetsScreen, "i": PortsScreen, "question_mark": HelpScreen, "f1": HelpScreen}
OTHER_KEYS = {"up", "down", "z", "x", "q", "ctrl+q"}  # tested one by one below


def bound_keys() -> set[str]:
    return {key.strip() for b in CompanionApp.BINDINGS for key in b.key.split(",")}


def test_every_binding_is_tested() -> None:
    assert bound_keys() == set(EXPECTED_INTENTS) | set(EXPECTED_SCREENS) | OTHER_KEYS


def test_each_key_posts_its_intent(make_app: Callable[..., CompanionApp], fake_runtime: FakeRuntime,
                                   run_pilot: Callable[..., None]) -> None:
    """One app, each key in turn (a fresh app per key costs seconds on a 2-core machine)."""
    app = make_app()

    async def scenario(pilot: Any) -> None:
        for key, check in EXPECTED_INTENTS.items():
            fake_runtime.intents.clear()
            await pilot.press(key)
            await wait_until(pilot, lambda: fake_runtime.intents)
            assert check(fake_runtime.intents), (key, fake_runtime.intents)
            if key == "c":
                await pilot.press("c")  # cancel the learn again
        assert fake_runtime.injected == []

    run_pilot(app, scenario)


def test_each_key_opens_its_screen_and_escape_closes_it(make_app: Callable[..., CompanionApp],
                                                        fake_runtime: FakeRuntime,
                                                        run_pilot: Callable[..., None]) -> None:
    app = make_app(list_backends=lambda: [])

    async def scenario(pilot: Any) -> None:
        for key, screen_type in EXPECTED_SCREENS.items():
            await pilot.press(key)
            assert await wait_until(pilot, lambda t=screen_type: isinstance(app.screen, t)), key
            await pilot.press("escape")
            assert await wait_until(pilot, lambda: len(app.screen_stack) == 1), key
        assert fake_runtime.intents == []
        assert fake_runtime.close_calls == 0

    run_pilot(app, scenario)


def test_up_down_select_the_control_that_left_right_change(make_app: Callable[..., CompanionApp],
                                                           fake_runtime: FakeRuntime,
                                                           run_pilot: Callable[..., None]) -> None:
    async def scenario(pilot: Any) -> None:
        await pilot.press("down", "right", "right")  # response length 2 -> 3 -> 4
        await pilot.press("down", "down", "left")  # key lock on -> off
        await pilot.press("down", "down", "right")  # morph steps 4 -> 5
        await pilot.press("down", "right")  # harmony style chorale -> block
        await pilot.press("up", "up", "up", "up", "up", "up", "left")  # wrapped round to temperature
        await wait_until(pilot, lambda: len(fake_runtime.intents) == 6)
        assert fake_runtime.intents == [
            ChangeSettings({"response_bars": 3}), ChangeSettings({"response_bars": 4}),
            ChangeSettings({"key_lock": False}), ChangeSettings({"morph_steps": 5}),
            ChangeSettings({"harmony_style": "block"}), ChangeSettings({"temperature": 0.95}),
        ]

    run_pilot(make_app(), scenario)


def test_z_and_x_move_the_keyboard_piano_an_octave(make_app: Callable[..., CompanionApp], fake_runtime: FakeRuntime,
                                                    run_pilot: Callable[..., None]) -> None:
    app = make_app()

    async def scenario(pilot: Any) -> None:
        await pilot.press("x", "x", "a")
        assert app.piano.octave == DEFAULT_OCTAVE + 2
        await pilot.press("z", "z", "z", "d")
        assert app.piano.octave == DEFAULT_OCTAVE - 1
        assert await wait_until(pilot, lambda: len(fake_runtime.injected) == 2)
        assert fake_runtime.injected == [[0x90, 84, 100], [0x90, 52, 100]]

    run_pilot(app, scenario)


@pytest.mark.parametrize("key", ["q", "ctrl+q"])
def test_quit_releases_every_note_then_closes_the_runtime(key: str, make_app: Callable[..., CompanionApp],
                                                          fake_runtime: FakeRuntime,
                                                          run_pilot: Callable[..., None]) -> None:
    app = make_app()

    async def scenario(pilot: Any) -> None:
        await pilot.press("a", "s")
        await pilot.press(key)
        assert await wait_until(pilot, lambda: fake_runtime.close_calls == 1)

    run_pilot(app, scenario)
    assert fake_runtime.close_calls == 1
    assert fake_runtime.injected == [[0x90, 60, 100], [0x90, 62, 100], [0x80, 60, 0], [0x80, 62, 0]]
    assert app.return_value == 0


@pytest.mark.parametrize("sig", TERMINATION_SIGNALS, ids=lambda sig: signal.Signals(sig).name)
def test_kill_or_a_closed_terminal_ends_the_app_with_every_note_off(sig: int, make_app: Callable[..., CompanionApp],
                                                                    fake_runtime: FakeRuntime,
                                                                    run_pilot: Callable[..., None]) -> None:
    app = make_app()

    async def scenario(pilot: Any) -> None:
        await pilot.press("a")  # a note held on the keyboard piano
        os.kill(os.getpid(), sig)  # as `kill` or the terminal closing does
        assert await wait_until(pilot, lambda: fake_runtime.close_calls == 1)

    run_pilot(app, scenario)
    assert fake_runtime.close_calls == 1
    assert fake_runtime.injected == [[0x90, 60, 100], [0x80, 60, 0]]
    assert app.return_code == 128 + sig


def test_panic_also_releases_the_keyboard_pianos_notes(make_app: Callable[..., CompanionApp],
                                                       fake_runtime: FakeRuntime,
                                                       run_pilot: Callable[..., None]) -> None:
    async def scenario(pilot: Any) -> None:
        await pilot.press("g", "space")
        await wait_until(pilot, lambda: fake_runtime.intents)
        assert fake_runtime.injected == [[0x90, 67, 100], [0x80, 67, 0]]
        assert fake_runtime.intents == [PanicIntent()]

    run_pilot(make_app(), scenario)


def test_help_lists_every_binding_and_the_piano(make_app: Callable[..., CompanionApp],
                                                run_pilot: Callable[..., None]) -> None:
    rows = help_rows(CompanionApp.BINDINGS)
    described = {does for _, does in rows}
    assert all(b.description in described for b in CompanionApp.BINDINGS)
    assert any("white keys" in does for does in described) and any("black keys" in does for does in described)
    assert any(keys == "Space" for keys, _ in rows) and any(keys == "? / F1" for keys, _ in rows)
    app = make_app()

    async def scenario(pilot: Any) -> None:
        await pilot.press("question_mark")
        assert await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert app.screen.rows == rows

    run_pilot(app, scenario)
