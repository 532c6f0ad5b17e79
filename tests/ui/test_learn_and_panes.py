"""Pilot tests: MIDI learn and CC control, the log from other threads, presets, ports, the keyboard piano's gates."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from companion.core.control import CCMapping
from companion.core.engine import ChangeSettings
from companion.live.intents import ChoosePorts, Learn, LoadPreset
from companion.presets.preset import ENV_CONFIG_DIR, load_preset, shipped_presets_dir
from companion.tui import presets_screen
from companion.tui.app import CompanionApp
from companion.tui.keyboard import DEFAULT_GATE_NS
from companion.tui.ports_screen import PortsScreen
from companion.tui.presets_screen import PresetsScreen

from .conftest import FakeClock, FakeRuntime, wait_until

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def test_midi_learn_maps_the_next_cc_moved_to_the_selected_control(
        make_app: Callable[..., CompanionApp], fake_runtime: FakeRuntime, run_pilot: Callable[..., None]) -> None:
    fake_runtime.set_engine(last_cc=(0, 7, 100))  # a CC moved before learning started must not be taken
    app = make_app()

    async def scenario(pilot: Any) -> None:
        await pilot.press("c")
        assert fake_runtime.intents == [Learn("temperature", None, None, 0.1, 2.0)]
        assert app.controls.learning == "temperature"
        fake_runtime.set_engine(last_cc=(2, 21, 127))  # knob CC21 on channel 3, turned fully up
        assert await wait_until(pilot, lambda: app.learning is None)
        assert fake_runtime.intents[1:] == [Learn("temperature", 21, 2, 0.1, 2.0),
                                            ChangeSettings({"temperature": 2.0})]
        assert app.cc_map == {"temperature": (2, 21)}
        fake_runtime.intents.clear()
        fake_runtime.set_engine(last_cc=(2, 21, 0))  # the knob now drives the control
        assert await wait_until(pilot, lambda: fake_runtime.intents)
        assert fake_runtime.intents == [ChangeSettings({"temperature": 0.1})]
        fake_runtime.intents.clear()
        fake_runtime.set_engine(last_cc=(5, 21, 64))  # same CC on another channel: not ours
        fake_runtime.set_engine(last_cc=(2, 22, 64))  # another CC on our channel: not ours
        await wait_until(pilot, lambda: fake_runtime.intents, timeout_s=0.3)
        assert fake_runtime.intents == []

    run_pilot(app, scenario)


def test_learn_on_a_choice_control_and_a_runtime_that_maps_ccs_itself(
        make_app: Callable[..., CompanionApp], fake_runtime: FakeRuntime, run_pilot: Callable[..., None]) -> None:
    fake_runtime.snap["cc_map"] = {"density": [None, 74]}  # the runtime maps CCs (top level): the UI only shows them
    app = make_app()

    async def scenario(pilot: Any) -> None:
        await pilot.press(*["up"] * 7, "c")  # harmony style (wrapped round from the top, past the six drum controls)
        fake_runtime.set_engine(last_cc=(0, 30, 127))
        assert await wait_until(pilot, lambda: app.learning is None)
        assert fake_runtime.intents[-2:] == [Learn("harmony_style", 30, 0, 0.0, 0.0),
                                             ChangeSettings({"harmony_style": "arpeggio"})]  # the last style
        assert app.cc_map == {"density": (None, 74), "harmony_style": (0, 30)}
        fake_runtime.intents.clear()
        fake_runtime.set_engine(last_cc=(0, 30, 0))  # the runtime applies it; the UI must not do it twice
        await wait_until(pilot, lambda: fake_runtime.intents, timeout_s=0.3)
        assert fake_runtime.intents == []
        await pilot.press("c", "c")  # learn armed, then cancelled
        assert app.learning is None

    run_pilot(app, scenario)


def test_log_lines_from_other_threads_all_reach_the_log_pane(
        make_app: Callable[..., CompanionApp], fake_runtime: FakeRuntime, run_pilot: Callable[..., None]) -> None:
    app = make_app()

    async def scenario(pilot: Any) -> None:
        assert await wait_until(pilot, lambda: app.log_pane.lines_shown == 1)  # the snapshot's history
        threads = [threading.Thread(target=lambda n=n: [fake_runtime.emit_log("warning", f"t{n} line {i}")
                                                       for i in range(50)]) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert await wait_until(pilot, lambda: app.log_pane.lines_shown == 151)
        assert "t2 line 49" in "\n".join(strip.text for strip in app.log_pane.lines)

    run_pilot(app, scenario)


def test_keyboard_piano_holds_while_repeating_and_ends_each_note_after_its_gate(
        make_app: Callable[..., CompanionApp], fake_runtime: FakeRuntime, fake_clock: FakeClock,
        run_pilot: Callable[..., None]) -> None:
    async def scenario(pilot: Any) -> None:
        await pilot.press("a")
        fake_clock.now_ns += DEFAULT_GATE_NS // 2
        await pilot.press("a", "w")  # auto-repeat of A: no new strike; W is C#
        assert fake_runtime.injected == [[0x90, 60, 100], [0x90, 61, 100]]
        fake_clock.now_ns += DEFAULT_GATE_NS  # both gates passed
        assert await wait_until(pilot, lambda: len(fake_runtime.injected) == 4)
        assert sorted(map(tuple, fake_runtime.injected[2:])) == [(0x80, 60, 0), (0x80, 61, 0)]
        await pilot.press("v", "1", "A")  # not piano keys; Shift+A plays A too
        assert fake_runtime.injected[4:] == [[0x90, 60, 100]]

    run_pilot(make_app(), scenario)


@pytest.fixture
def preset_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The real preset store with a user folder of the test's own, holding one broken user preset."""
    monkeypatch.setenv(ENV_CONFIG_DIR, str(tmp_path))
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "aaa-broken.toml").write_text("[sampling]\ntemperature = 9\n")
    return tmp_path / "presets"


def test_preset_browser_marks_previews_loads_and_saves_on_top_of_the_current_preset(
        make_app: Callable[..., CompanionApp], fake_runtime: FakeRuntime, preset_home: Path,
        run_pilot: Callable[..., None]) -> None:
    learned = CCMapping(21, "temperature", channel=None, low=0.5, high=1.5)  # as MIDI learn leaves it
    fake_runtime.snap["cc_mappings"] = (*load_preset("trading-fours").cc, learned)
    app = make_app()

    async def scenario(pilot: Any) -> None:
        await pilot.press("b")
        assert await wait_until(pilot, lambda: isinstance(app.screen, PresetsScreen))
        screen = app.screen
        options = screen.query_one("#presets-list")
        description = screen.query_one("#presets-description")
        current = options.get_option_at_index(options.highlighted).prompt
        assert str(current).startswith("● Trading fours")  # the running preset, by id, marked and highlighted
        assert load_preset("trading-fours").description[:40] in str(description.render())  # its description shown
        options.highlighted = 0  # aaa-broken
        assert await wait_until(pilot, lambda: "cannot load" in str(description.render()))
        assert "temperature" in str(description.render())
        await pilot.press("enter")
        assert await wait_until(pilot, lambda: fake_runtime.intents == [LoadPreset("aaa-broken")])
        await pilot.press("right", "b", "s")  # temperature 1.05, then save it
        await pilot.press(*"my set", "enter")
        assert await wait_until(pilot, lambda: len(app.screen_stack) == 1)

    run_pilot(app, scenario)
    saved = tomllib.loads((preset_home / "my-set.toml").read_text())
    base = tomllib.loads((shipped_presets_dir() / "trading-fours.toml").read_text())
    assert saved["name"] == "my set"
    assert saved["sampling"]["temperature"] == 1.05
    assert saved["engine"]["response_bars"] == 2 and saved["harmony"]["style"] == "chorale"
    # What the live settings do not hold comes from the running preset: its CC map (plus the learned one),
    # its bank and its clock.
    def controls(table: dict[str, Any]) -> dict[int, str]:
        return {int(k): v if isinstance(v, str) else v["control"] for k, v in table.items()}

    assert controls(saved["cc"]) == {**controls(base.get("cc", {})), 21: "temperature"}
    assert saved["cc"]["21"]["min"] == 0.5 and saved["cc"]["21"]["max"] == 1.5
    assert saved.get("bank") == base.get("bank") and saved["clock"].get("bpm") == base.get("clock", {}).get("bpm")
    assert load_preset("my-set").name == "my set"  # it loads back
    assert fake_runtime.injected == []  # typing the name played no notes


def test_a_preset_that_cannot_be_saved_says_why_and_the_session_goes_on(
        make_app: Callable[..., CompanionApp], fake_runtime: FakeRuntime, preset_home: Path,
        run_pilot: Callable[..., None]) -> None:
    fake_runtime.snap["settings"]["seed"] = -5  # `--seed -5` on the command line: out of the schema's range
    app = make_app()

    async def scenario(pilot: Any) -> None:
        await pilot.press("b")
        assert await wait_until(pilot, lambda: isinstance(app.screen, PresetsScreen))
        await pilot.press("s", *"bad seed", "enter")
        description = app.screen.query_one("#presets-description")
        assert await wait_until(pilot, lambda: "not saved" in str(description.render()))
        assert "seed" in str(description.render())
        await pilot.press("escape")
        assert await wait_until(pilot, lambda: len(app.screen_stack) == 1)

    run_pilot(app, scenario)
    assert not (preset_home / "bad-seed.toml").exists()


def test_preset_name_that_cannot_be_a_file_is_refused_with_a_message(preset_home: Path) -> None:
    with pytest.raises(ValueError, match="use letters, digits"):
        presets_screen.save_preset_file("../evil", {"temperature": 1.0})
    path = presets_screen.save_preset_file("Night Set", {"temperature": 0.8, "extras": {"distance": 0.3}})
    assert tomllib.loads(path.read_text())["variation"]["distance"] == 0.3


def test_port_chooser_picks_input_then_output_with_one_key_each(
        make_app: Callable[..., CompanionApp], fake_runtime: FakeRuntime, run_pilot: Callable[..., None]) -> None:
    backends = [
        SimpleNamespace(name="alsa", usable=True, inputs=("Midi Through:0",), outputs=("Midi Through:0",)),
        SimpleNamespace(name="jack", usable=True, inputs=("companion:Companion Out", "Bitwig:out 1"),
                        outputs=("Bitwig:in 1", "Surge XT:midi in")),
    ]
    app = make_app(list_backends=lambda: backends)

    async def scenario(pilot: Any) -> None:
        await pilot.press("i")
        assert await wait_until(pilot, lambda: isinstance(app.screen, PortsScreen))
        options = app.screen.query_one("#ports-list")
        assert await wait_until(pilot, lambda: options.option_count == 2)  # virtual + Bitwig (ours left out)
        await pilot.press("1")  # input: Bitwig:out 1
        assert await wait_until(pilot, lambda: options.option_count == 3)
        await pilot.press("2")  # output: Surge XT
        assert await wait_until(pilot, lambda: fake_runtime.intents)
        assert fake_runtime.intents == [ChoosePorts("Bitwig:out 1", "Surge XT:midi in", "jack")]

    run_pilot(app, scenario)


def test_port_chooser_shows_why_when_ports_cannot_be_listed(
        make_app: Callable[..., CompanionApp], fake_runtime: FakeRuntime, run_pilot: Callable[..., None]) -> None:
    def broken() -> list[Any]:
        raise RuntimeError("ALSA sequencer not available")

    app = make_app(list_backends=broken)

    async def scenario(pilot: Any) -> None:
        await pilot.press("i")
        assert await wait_until(pilot, lambda: isinstance(app.screen, PortsScreen))
        title = app.screen.query_one("#ports-title")
        assert await wait_until(pilot, lambda: "ALSA sequencer not available" in str(title.render()))
        await pilot.press("0", "escape")
        assert await wait_until(pilot, lambda: len(app.screen_stack) == 1)
        assert fake_runtime.intents == []

    run_pilot(app, scenario)


def test_an_empty_snapshot_still_draws(run_pilot: Callable[..., None], fake_clock: FakeClock) -> None:
    runtime = FakeRuntime({})
    app = CompanionApp(runtime, clock_ns=fake_clock)

    async def scenario(pilot: Any) -> None:
        await pilot.press("m", "right", "space")
        assert await wait_until(pilot, lambda: len(runtime.intents) == 3)
        assert "bar" in str(app.transport.render())

    run_pilot(app, scenario)


def test_the_roll_catches_up_with_the_music_even_when_it_stops_changing(
        make_app: Callable[..., CompanionApp], fake_runtime: FakeRuntime, run_pilot: Callable[..., None]) -> None:
    app = make_app()

    def blocks() -> int:
        return sum(strip.text.count("█") for strip in app.roll.strips())

    async def scenario(pilot: Any) -> None:
        assert await wait_until(pilot, lambda: blocks() > 0)
        fake_runtime.snap["notes"] = []  # one change, then the same picture every snapshot after it
        assert await wait_until(pilot, lambda: blocks() == 0)

    run_pilot(app, scenario)


def test_a_new_preset_shows_its_own_cc_labels_only(
        make_app: Callable[..., CompanionApp], fake_runtime: FakeRuntime, run_pilot: Callable[..., None]) -> None:
    fake_runtime.snap["cc_map"] = {"response_bars": [0, 22], "density": [0, 23]}
    app = make_app()

    async def scenario(pilot: Any) -> None:
        assert await wait_until(pilot, lambda: "CC22" in str(app.controls.render()))
        with fake_runtime._lock:  # a Program Change: the other preset maps only the temperature
            fake_runtime.snap["preset"], fake_runtime.snap["cc_map"] = "duet", {"temperature": [0, 74]}
        assert await wait_until(pilot, lambda: app.cc_map == {"temperature": (0, 74)})
        await pilot.pause()
        shown = str(app.controls.render())
        assert "CC74" in shown and "CC22" not in shown and "CC23" not in shown, shown

    run_pilot(app, scenario)
