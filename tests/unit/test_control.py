"""MIDI control: CC scaled onto controls, MIDI learn, Program Change -> preset switch at the next bar."""

from __future__ import annotations

import pytest

from companion.core.control import (
    CONTROLS,
    Bank,
    CCMapping,
    Controller,
    Learned,
    SetExtras,
    SwitchPreset,
    learn,
    next_bar_ticks,
    split_changes,
    switch_commands,
    with_extras,
)
from companion.core.engine import ChangeSettings, Engine, EngineSettings, PanicIntent, Regenerate, StorePhrase
from companion.core.events import (
    PPQ,
    Cancel,
    ControlChange,
    Log,
    NoteOff,
    NoteOn,
    Panic,
    ProgramChange,
    RequestAnswer,
)

BAR = 4 * PPQ


def _controller() -> Controller:
    bank = Bank({0: "folk-call-response", 5: "duet"}, channel=15)
    return Controller((CCMapping(21, "temperature"), CCMapping(22, "response_bars", low=1, high=4),
                       CCMapping(23, "distance"), CCMapping(25, "regenerate"), CCMapping(26, "key_lock")), bank)


def test_cc_scales_onto_each_controls_range() -> None:
    ctl = _controller()
    assert ctl.handle(ControlChange(0, 21, 0), 0, BAR) == (True, [ChangeSettings({"temperature": 0.1})])
    assert ctl.handle(ControlChange(0, 21, 127), 0, BAR) == (True, [ChangeSettings({"temperature": 2.0})])
    assert ctl.handle(ControlChange(0, 22, 127), 0, BAR) == (True, [ChangeSettings({"response_bars": 4})])
    assert ctl.handle(ControlChange(0, 22, 64), 0, BAR) == (True, [ChangeSettings({"response_bars": 3})])
    assert ctl.handle(ControlChange(0, 23, 127), 0, BAR) == (True, [SetExtras({"distance": 1.0})])
    assert ctl.handle(ControlChange(0, 26, 63), 0, BAR) == (True, [ChangeSettings({"key_lock": False})])
    assert ctl.handle(ControlChange(0, 26, 64), 0, BAR) == (True, [ChangeSettings({"key_lock": True})])


def test_choice_control_gives_one_slice_per_choice() -> None:
    spec = CONTROLS["harmony_style"]
    values = (0, 21, 22, 42, 43, 63, 64, 85, 86, 106, 107, 127)
    assert [spec.scale(v) for v in values] == [s for s in ("chorale", "block", "bass", "pad", "comping", "arpeggio")
                                               for _ in range(2)]


def test_unmapped_cc_and_notes_pass_through_to_the_engine() -> None:
    ctl = _controller()
    assert ctl.handle(ControlChange(0, 7, 100), 0, BAR) == (False, [])
    assert ctl.handle(ControlChange(0, 64, 127), 0, BAR) == (False, [])  # sustain stays the sustain pedal
    assert ctl.handle(NoteOn(0, 60, 100), 0, BAR) == (False, [])


def test_a_trigger_fires_once_per_press() -> None:
    ctl = _controller()
    assert ctl.handle(ControlChange(0, 25, 127), 0, BAR)[1] == [Regenerate(new_seed=True)]
    assert ctl.handle(ControlChange(0, 25, 120), 0, BAR)[1] == []  # still held
    assert ctl.handle(ControlChange(0, 25, 0), 0, BAR)[1] == []
    assert ctl.handle(ControlChange(0, 25, 127), 0, BAR)[1] == [Regenerate(new_seed=True)]


def test_panic_control_posts_the_panic_intent() -> None:
    ctl = Controller((CCMapping(30, "panic"),))
    assert ctl.handle(ControlChange(3, 30, 127), 0, BAR) == (True, [PanicIntent()])


def test_store_phrase_control_posts_its_intent() -> None:
    ctl = Controller((CCMapping(31, "store_phrase"),))
    assert ctl.handle(ControlChange(0, 31, 127), 0, BAR) == (True, [StorePhrase()])


def test_mapping_on_one_channel_ignores_the_others() -> None:
    ctl = Controller((CCMapping(21, "temperature", channel=2),))
    assert ctl.handle(ControlChange(1, 21, 127), 0, BAR) == (False, [])
    assert ctl.handle(ControlChange(2, 21, 127), 0, BAR)[0] is True


def test_midi_learn_maps_the_next_cc_moved() -> None:
    ctl = _controller()
    ctl.arm_learn("density")
    assert ctl.learning == "density"
    assert ctl.handle(ControlChange(0, 64, 127), 0, BAR) == (False, [])  # the pedal is never learnt
    consumed, actions = ctl.handle(ControlChange(4, 40, 10), 0, BAR)
    assert consumed and isinstance(actions[0], Learned) and actions[0].mapping == CCMapping(40, "density", 4)
    assert ctl.learning is None
    assert ctl.handle(ControlChange(4, 40, 127), 0, BAR) == (True, [SetExtras({"density": 16.0})])


def test_learn_replaces_the_controls_old_cc_and_the_ccs_old_control() -> None:
    mappings = (CCMapping(21, "temperature"), CCMapping(22, "density"))
    learnt = learn(mappings, "temperature", 22)
    assert learnt == (CCMapping(22, "temperature"),)


def test_learning_a_bad_control_or_reserved_cc_is_a_warning() -> None:
    ctl = Controller()
    assert isinstance(ctl.arm_learn("loudness")[0], Log)
    assert ctl.learning is None
    actions = ctl.learn("temperature", 123)
    assert actions[0].level == "warning" and "all notes off" in actions[0].text
    with pytest.raises(ValueError, match="unknown control"):
        CCMapping(21, "temprature")


@pytest.mark.parametrize(("now", "expected"), [(0, 0), (1, BAR), (BAR - 1, BAR), (BAR, BAR), (5 * BAR + 7, 6 * BAR)])
def test_next_bar_is_at_or_after_now(now: int, expected: int) -> None:
    assert next_bar_ticks(now, BAR) == expected


def test_program_change_maps_to_a_switch_at_the_next_bar() -> None:
    ctl = _controller()
    now = 3 * BAR + PPQ  # beat 2 of bar 4
    consumed, actions = ctl.handle(ProgramChange(15, 5), now, BAR)
    assert consumed and actions[0] == SwitchPreset("duet", 5, 4 * BAR)
    assert ctl.due(4 * BAR - 1) is None
    assert ctl.due(4 * BAR) == SwitchPreset("duet", 5, 4 * BAR)
    assert ctl.due(4 * BAR + 1) is None  # it happens once


def test_program_change_on_another_channel_is_not_ours() -> None:
    assert _controller().handle(ProgramChange(0, 5), 0, BAR) == (False, [])


def test_program_change_in_a_3_4_bar_waits_for_its_bar_line() -> None:
    bar_3_4 = 3 * PPQ
    _, actions = _controller().handle(ProgramChange(15, 0), bar_3_4 + 1, bar_3_4)
    assert actions[0].at_ticks == 2 * bar_3_4


def test_unknown_program_is_refused_with_the_bank_listed() -> None:
    consumed, actions = _controller().handle(ProgramChange(15, 9), 0, BAR)
    assert consumed and actions[0].level == "warning" and "0=folk-call-response" in actions[0].text


def test_a_later_program_change_replaces_the_pending_one() -> None:
    ctl = _controller()
    ctl.handle(ProgramChange(15, 5), 10, BAR)
    ctl.handle(ProgramChange(15, 0), 20, BAR)
    assert ctl.due(BAR) is not None and ctl.due(BAR) is None
    assert ctl.pending is None


def test_new_preset_without_a_bank_keeps_the_current_bank() -> None:
    ctl = _controller()
    ctl.replace((CCMapping(50, "top_p"),), None)
    assert ctl.bank.programs[5] == "duet"
    assert ctl.handle(ControlChange(0, 21, 0), 0, BAR) == (False, [])  # old mappings went with the old preset
    ctl.replace((), Bank({1: "morph"}, channel=None))
    assert ctl.handle(ProgramChange(3, 1), 0, BAR)[1][0].name == "morph"


def _engine_with_an_answer_due() -> tuple[Engine, list]:
    engine = Engine(EngineSettings(silence_beats=1.0, response_bars=2))
    engine.handle(NoteOn(0, 60, 90), 0)
    engine.handle(NoteOff(0, 60), PPQ)
    commands = engine.tick(2 * PPQ + 1)
    requests = [c for c in commands if isinstance(c, RequestAnswer)]
    assert requests, commands
    return engine, requests


def test_switch_commands_cancel_answers_at_the_bar_and_end_in_note_offs() -> None:
    engine, (request,) = _engine_with_an_answer_due()
    new = EngineSettings(temperature=0.5, output_channel=3)
    commands = switch_commands(engine, new, request.start_ticks, "preset duet")
    assert Cancel(request.tag, request.start_ticks, "stop") in commands
    assert commands[-1] == Panic("preset duet")
    assert engine.settings == new


def test_switch_commands_with_the_same_settings_still_silence_everything() -> None:
    engine, (request,) = _engine_with_an_answer_due()
    commands = switch_commands(engine, engine.settings, BAR, "same preset again")
    assert any(isinstance(c, Cancel) for c in commands) and commands[-1] == Panic("same preset again")


def test_with_extras_lays_engine_settings_over_the_preset_extras() -> None:
    _, (request,) = _engine_with_an_answer_due()
    merged = with_extras(request, {"density": 4.0, "temperature": 9.9, "style": "chorale"})
    assert merged.settings["density"] == 4.0 and merged.settings["style"] == "chorale"
    assert merged.settings["temperature"] == request.settings["temperature"]
    assert (merged.tag, merged.seed, merged.start_ticks) == (request.tag, request.seed, request.start_ticks)


def test_split_changes_sends_non_engine_settings_to_the_extras() -> None:
    engine, extras = split_changes({"temperature": 0.8, "density": 4.0, "style": "chorale"})
    assert engine == {"temperature": 0.8} and extras == {"density": 4.0, "style": "chorale"}
