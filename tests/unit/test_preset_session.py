"""The runtime's preset glue, driven tick by tick: Program Change -> switch at the bar, refusals, extras, learn."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from companion.core.engine import ChangeSettings, Engine
from companion.core.events import PPQ, Cancel, ControlChange, Log, NoteOff, NoteOn, Panic, ProgramChange, RequestAnswer
from companion.errors import PresetError
from companion.presets.preset import ENV_CONFIG_DIR, Preset, load_preset, parse_preset
from companion.presets.session import ClockChange, PresetSession

BAR = 4 * PPQ


@pytest.fixture(autouse=True)
def no_user_presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_CONFIG_DIR, str(tmp_path / "config"))


class RecordingLoader:
    """Loads presets by name from a dict, remembering what was asked."""

    def __init__(self, presets: dict[str, Preset]) -> None:
        self.presets = presets
        self.asked: list[str] = []

    def __call__(self, name: str) -> Preset:
        self.asked.append(name)
        if name not in self.presets:
            raise PresetError(f"no preset named {name!r}")
        return self.presets[name]


def _session() -> tuple[PresetSession, Engine, RecordingLoader]:
    start = load_preset("folk-call-response")
    loader = RecordingLoader({
        "trading-fours": load_preset("trading-fours"),
        "waltz-answers": load_preset("waltz-answers"),
        "chorale-harmonizer": load_preset("chorale-harmonizer"),
    })
    return PresetSession(start, loader), Engine(start.engine_settings()), loader


def _answer(engine: Engine, session: PresetSession) -> RequestAnswer:
    engine.handle(NoteOn(0, 62, 90), 0)
    engine.handle(NoteOff(0, 62), PPQ)
    commands = engine.tick(PPQ + round(engine.settings.silence_beats * PPQ) + 1)
    (request,) = [c for c in commands if isinstance(c, RequestAnswer)]
    return session.request(request)


def test_program_change_switches_at_the_next_bar_with_note_offs() -> None:
    session, engine, loader = _session()
    request = _answer(engine, session)
    now = request.start_ticks + PPQ  # the answer is playing, beat 2 of its bar
    consumed, commands = session.handle(engine, ProgramChange(15, 1), now)
    assert consumed and loader.asked == ["trading-fours"]
    assert [c.level for c in commands if isinstance(c, Log)] == ["info"]
    at = request.start_ticks + BAR
    assert session.tick(engine, at - 1) == [] and session.name == "folk-call-response"
    commands = session.tick(engine, at)
    assert Cancel(request.tag, at, "stop") in commands
    assert any(isinstance(c, Panic) for c in commands)
    assert session.name == "trading-fours" and engine.settings.response_bars == 4
    assert session.extras["preset"] == "trading-fours" and session.extras["density"] is None
    # trading-fours sets no tempo: the running one stays (a switch never jumps to a default 120)
    assert session.take_clock_change() == ClockChange(None, 4, 4) and session.take_clock_change() is None
    assert session.tick(engine, at + BAR) == []  # once


def test_new_preset_meter_reaches_the_clock_change() -> None:
    session, engine, _ = _session()
    session.handle(engine, ProgramChange(15, 2), 10)
    session.tick(engine, BAR)
    assert session.take_clock_change() == ClockChange(96.0, 3, 4)
    assert engine.settings.bar_ticks == 3 * PPQ


def test_a_preset_that_fails_to_load_is_refused_and_the_current_stays() -> None:
    session, engine, _ = _session()
    before = engine.settings
    session.controller.bank = dataclasses.replace(session.controller.bank, programs={9: "missing"})
    consumed, commands = session.handle(engine, ProgramChange(15, 9), 10)
    assert consumed and any(isinstance(c, Log) and c.level == "warning" and "refused" in c.text for c in commands)
    assert session.tick(engine, BAR) == [] and session.name == "folk-call-response" and engine.settings == before


def test_load_preset_intent_from_the_ui_switches_at_the_bar() -> None:
    @dataclasses.dataclass(frozen=True)
    class LoadPreset:  # the UI's intent, matched by name
        name: str

    session, engine, _ = _session()
    commands = session.intent(engine, LoadPreset("trading-fours"), BAR + 5)
    assert commands and session.controller.pending.at_ticks == 2 * BAR
    session.tick(engine, 2 * BAR)
    assert session.name == "trading-fours"


def test_cc_changes_reach_engine_and_extras() -> None:
    session, engine, _ = _session()
    assert session.handle(engine, ControlChange(0, 21, 0), 0)[0] is True
    assert engine.settings.temperature == pytest.approx(0.1)
    session.handle(engine, ControlChange(0, 23, 127), 0)
    assert session.extras["density"] == 16.0
    assert session.request(_answer(engine, session)).settings["density"] == 16.0
    assert session.handle(engine, ControlChange(0, 7, 100), 0) == (False, [])


def test_change_settings_intent_splits_extras_from_engine_settings() -> None:
    session, engine, _ = _session()
    session.intent(engine, ChangeSettings({"temperature": 0.5, "distance": 0.8}), 0)
    assert engine.settings.temperature == 0.5 and session.extras["distance"] == 0.8
    assert session.intent(engine, object(), 0) is None  # not ours: the engine takes it


def test_learn_intent_arms_then_maps_the_next_cc() -> None:
    @dataclasses.dataclass(frozen=True)
    class Learn:
        target: str
        control: int | None = None
        channel: int | None = None
        low: float = 0.0
        high: float = 0.0

    session, engine, _ = _session()
    session.intent(engine, Learn("distance"), 0)
    assert session.snapshot()["learning"] == "distance"
    session.handle(engine, ControlChange(2, 40, 0), 0)
    assert session.snapshot()["cc_map"]["distance"] == (2, 40)
    session.handle(engine, ControlChange(2, 40, 127), 0)
    assert session.extras["distance"] == 1.0


def test_request_settings_keep_engine_values_over_extras() -> None:
    preset = parse_preset('[model]\nstyle = "chorale"\n', preset_id="p")
    session = PresetSession(preset)
    engine = Engine(preset.engine_settings())
    request = _answer(engine, session)
    assert request.settings["style"] == "chorale" and request.settings["preset"] == "p"
    assert request.settings["temperature"] == engine.settings.temperature
