"""The engine driven tick by tick: thru, panic, phrase -> answer request, intents, snapshot."""

from __future__ import annotations

import pytest

from companion.core.engine import (
    ChangeSettings,
    Engine,
    EngineSettings,
    PanicIntent,
    Regenerate,
    SetMode,
    available_modes,
)
from companion.core.events import (
    CC_ALL_NOTES_OFF,
    PPQ,
    Cancel,
    ClockPulse,
    ClockStart,
    ClockStop,
    Command,
    ControlChange,
    Log,
    NoteOff,
    NoteOn,
    Panic,
    PitchBend,
    ProgramChange,
    RequestAnswer,
    SendNow,
    SongPosition,
)

BAR = 4 * PPQ
C_MAJOR_RUN = [60, 62, 64, 65, 67, 69, 71, 72]


def play_phrase(
    engine: Engine, start: int = 0, pitches: list[int] = C_MAJOR_RUN, channel: int = 0
) -> list[Command]:
    """Eighth notes from `start`, then tick every 10 ticks until an answer is requested (or 4 bars pass)."""
    commands: list[Command] = []
    for i, pitch in enumerate(pitches):
        commands += engine.handle(NoteOn(channel, pitch, 90), start + i * 240)
        commands += engine.handle(NoteOff(channel, pitch), start + i * 240 + 200)
    last = start + len(pitches) * 240
    for now in range(last, last + 4 * BAR, 10):
        commands += engine.tick(now)
        if any(isinstance(c, RequestAnswer) for c in commands):
            break
    return commands


def requests(commands: list[Command]) -> list[RequestAnswer]:
    return [c for c in commands if isinstance(c, RequestAnswer)]


def test_phrase_gives_one_answer_request_on_the_next_bar() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0, response_bars=2, response_start="bar", seed=10))
    [request] = requests(play_phrase(engine))
    # Last release at 7*240+200 = 1880; silence ends at 2360; the next bar at or after 2360 + lead is 3840.
    assert request.phrase.end_ticks == 1880 + PPQ
    assert request.start_ticks == 2 * BAR
    assert request.end_ticks == 4 * BAR
    assert request.tag == "answer-1"
    assert request.seed == 11
    assert request.key == (0, "major")
    assert request.settings["temperature"] == 1.0
    assert [n.pitch for n in request.phrase.notes] == C_MAJOR_RUN
    assert engine.snapshot()["key"] == "C major"


def test_answer_on_the_next_beat() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0, response_start="beat"))
    [request] = requests(play_phrase(engine))
    assert request.start_ticks == 6 * PPQ  # 2360 + 120 lead = 2480 -> the beat at 2880
    assert request.end_ticks == request.start_ticks + 2 * BAR


def test_answers_are_numbered_and_seeded_deterministically() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0, seed=100))
    first = requests(play_phrase(engine))[0]
    second = requests(play_phrase(engine, start=8 * BAR))[0]
    assert (first.tag, first.seed) == ("answer-1", 101)
    assert (second.tag, second.seed) == ("answer-2", 102)


def test_key_lock_off_sends_no_key() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0, key_lock=False))
    [request] = requests(play_phrase(engine))
    assert request.key is None
    assert engine.snapshot()["key"] == "C major"  # still estimated for the UI


def test_thru_uses_the_thru_or_output_channel() -> None:
    engine = Engine(EngineSettings(thru=True, output_channel=3))
    assert engine.handle(NoteOn(0, 60, 90), 0) == [SendNow(NoteOn(3, 60, 90))]
    assert engine.handle(PitchBend(0, 200), 5) == [SendNow(PitchBend(3, 200))]
    engine = Engine(EngineSettings(thru=True, output_channel=3, thru_channel=7))
    assert engine.handle(NoteOff(0, 60), 10) == [SendNow(NoteOff(7, 60))]


def test_no_thru_for_other_channels_or_triggers() -> None:
    engine = Engine(EngineSettings(thru=True, input_channel=1, trigger_note=36, trigger_cc=80))
    assert engine.handle(NoteOn(0, 60, 90), 0) == []
    assert engine.handle(NoteOn(1, 36, 90), 0) == []
    assert engine.handle(ControlChange(1, 80, 127), 0) == []
    assert engine.handle(NoteOn(1, 61, 90), 0) == [SendNow(NoteOn(0, 61, 90))]  # to the output channel
    engine2 = Engine(EngineSettings(thru=False))
    assert engine2.handle(NoteOn(0, 60, 90), 0) == []


def test_player_all_notes_off_is_a_panic_once_per_burst() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0))
    [request] = requests(play_phrase(engine))
    now = request.start_ticks + 100
    commands: list[Command] = []
    for channel in range(16):  # a DAW stopping sends CC123 on every channel
        commands += engine.handle(ControlChange(channel, CC_ALL_NOTES_OFF, 0), now)
    assert commands == [Cancel(request.tag, now, "stop"), Panic("the player sent CC123")]
    assert engine.snapshot()["counters"]["panics"] == 1
    assert engine.handle(ControlChange(0, 120, 0), now + 1) == [Panic("the player sent CC120")]


def test_program_change_and_clock_messages_do_not_crash() -> None:
    engine = Engine()
    for message in (ProgramChange(0, 12), ClockPulse(), ClockStart(), SongPosition(16)):
        assert engine.handle(message, 0) == []
    assert engine.snapshot()["counters"]["program_changes"] == 1


def test_clock_stop_cancels_the_answer_and_the_half_phrase() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0))
    [request] = requests(play_phrase(engine))
    assert engine.handle(ClockStop(), request.start_ticks + 10) == [
        Cancel(request.tag, request.start_ticks + 10)
    ]
    assert not engine.snapshot()["answering"]
    engine.handle(NoteOn(0, 50, 90), 8 * BAR)  # half a phrase in progress
    assert engine.capture.in_progress
    assert engine.handle(ClockStop(), 8 * BAR + 100) == []
    assert not engine.capture.in_progress
    assert requests([c for now in range(8 * BAR, 12 * BAR, 60) for c in engine.tick(now)]) == []


@pytest.mark.parametrize("how", ["stop", "duck"])
def test_player_resuming_stops_or_ducks_the_answer(how: str) -> None:
    engine = Engine(EngineSettings(silence_beats=1.0, on_player_resume=how))
    [request] = requests(play_phrase(engine))
    now = request.start_ticks + PPQ
    engine.tick(now)
    assert engine.snapshot()["answering"]
    commands = engine.handle(NoteOn(0, 64, 90), now)
    assert commands == [Cancel(request.tag, now, how)]
    # A second note does not cancel again.
    assert engine.handle(NoteOn(0, 65, 90), now + 10) == []
    assert engine.snapshot()["answering"] is (how == "duck")


def test_player_resuming_while_the_answer_is_only_due_cancels_it() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0))
    [request] = requests(play_phrase(engine))
    now = request.start_ticks - 200
    assert engine.handle(NoteOn(0, 64, 90), now) == [Cancel(request.tag, now, "stop")]


def test_note_offs_and_pedal_do_not_count_as_resuming() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0))
    [request] = requests(play_phrase(engine))
    now = request.start_ticks + 10
    assert engine.handle(NoteOff(0, 64), now) == []
    assert engine.handle(ControlChange(0, 64, 127), now) == []
    assert engine.snapshot()["answering"]


def test_answer_expires_after_its_end() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0))
    [request] = requests(play_phrase(engine))
    engine.tick(request.end_ticks)
    snapshot = engine.snapshot()
    assert not snapshot["answering"] and not snapshot["answer_due"]
    assert engine.handle(NoteOn(0, 60, 90), request.end_ticks + 5) == []


def test_set_mode_and_bad_intents_answer_with_logs() -> None:
    engine = Engine()
    [log] = engine.intent(SetMode("no_such_mode"))
    assert isinstance(log, Log) and log.level == "warning" and "no_such_mode" in log.text
    assert "call_response" in log.text
    [log] = engine.intent(ChangeSettings({"output_channel": 16}))
    assert isinstance(log, Log) and "output_channel" in log.text
    [log] = engine.intent(ChangeSettings({"tempo": 3}))
    assert isinstance(log, Log) and "tempo" in log.text
    [log] = engine.intent("not an intent")  # type: ignore[arg-type]
    assert isinstance(log, Log)
    assert engine.settings == EngineSettings()


def test_settings_that_affect_playback_cancel_the_answer() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0))
    [request] = requests(play_phrase(engine))
    assert engine.intent(ChangeSettings({"thru": True})) == []  # input side only: keeps the answer
    assert engine.snapshot()["answer_due"]
    commands = engine.intent(ChangeSettings({"temperature": 1.3}))
    assert [type(c) for c in commands] == [Cancel]
    assert commands[0].tag == request.tag  # type: ignore[union-attr]
    assert engine.settings.temperature == 1.3 and engine.settings.thru


def test_changing_capture_settings_applies_to_the_capture() -> None:
    engine = Engine()
    engine.intent(ChangeSettings({"silence_beats": 3.0, "trigger_note": 36, "input_channel": 4}))
    assert engine.capture.settings.silence_beats == 3.0
    assert engine.capture.settings.trigger_note == 36
    assert engine.capture.settings.input_channel == 4


def test_switching_to_the_same_mode_is_a_no_op_and_mode_change_cancels() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0))
    requests(play_phrase(engine))
    assert engine.intent(SetMode("call_response")) == []
    assert engine.snapshot()["answer_due"]


def test_panic_intent() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0))
    [request] = requests(play_phrase(engine))
    commands = engine.intent(PanicIntent())
    assert isinstance(commands[-1], Panic)
    assert Cancel(request.tag, engine.snapshot()["now_ticks"], "stop") in commands
    assert isinstance(engine.intent(PanicIntent())[-1], Panic)  # pressing it twice still panics


def test_regenerate_with_and_without_a_new_seed() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0, seed=5))
    assert isinstance(engine.intent(Regenerate())[0], Log)  # nothing played yet
    [first] = requests(play_phrase(engine))
    commands = engine.intent(Regenerate(new_seed=False))
    assert commands[0] == Cancel(first.tag, engine.snapshot()["now_ticks"], "stop")
    [again] = requests(commands)
    assert again.tag == "answer-2" and again.seed == first.seed and again.phrase == first.phrase
    [fresh] = requests(engine.intent(Regenerate(new_seed=True)))
    assert fresh.tag == "answer-3" and fresh.seed == 5 + 3


def test_snapshot_shape() -> None:
    engine = Engine()
    snapshot = engine.snapshot()
    for key in (
        "mode",
        "phrases",
        "capturing",
        "player_active",
        "key",
        "counters",
        "answering",
        "answer_due",
    ):
        assert key in snapshot
    assert snapshot["mode"] == "call_response" and snapshot["key"] is None


def test_stray_note_offs_are_counted_not_raised() -> None:
    engine = Engine()
    assert engine.handle(NoteOff(0, 99), 0) == []
    assert engine.snapshot()["counters"]["ignored_note_offs"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("output_channel", 16),
        ("input_channel", -1),
        ("thru_channel", 99),
        ("response_start", "soon"),
        ("on_player_resume", "fade"),
        ("response_bars", 0),
        ("temperature", 0.0),
        ("silence_beats", 0),
        ("max_bars", 0),
        ("trigger_note", 128),
        ("mode", "karaoke"),
        ("beat_unit", 3),
        ("lead_ticks", -1),
    ],
)
def test_settings_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        EngineSettings(**{field: value})


def test_settings_replace_and_modes() -> None:
    assert "call_response" in available_modes()
    settings = EngineSettings().replace(response_bars=4)
    assert settings.response_bars == 4
    with pytest.raises(ValueError, match="unknown setting"):
        EngineSettings().replace(nope=1)


def test_six_eight_answers_on_the_dotted_bar() -> None:
    engine = Engine(EngineSettings(silence_beats=1.0, beats_per_bar=6, beat_unit=8, response_bars=1))
    [request] = requests(play_phrase(engine))
    bar = 6 * (PPQ // 2)
    assert request.start_ticks % bar == 0 and request.end_ticks - request.start_ticks == bar
    assert request.phrase.bar_ticks == bar


def test_a_set_key_is_what_the_key_lock_keeps_to_instead_of_the_estimate() -> None:
    detected = Engine(EngineSettings(silence_beats=1.0))
    [answer] = requests(play_phrase(detected))
    assert answer.key == (0, "major") and detected.snapshot()["key_source"] == "detected"
    fixed = Engine(EngineSettings(silence_beats=1.0, key="D minor"))  # a C major run, but the preset says D minor
    [answer] = requests(play_phrase(fixed))
    assert answer.key == (2, "minor")
    assert fixed.snapshot()["key"] == "D minor" and fixed.snapshot()["key_source"] == "set"
