"""The drums and drum_answers modes through the pure engine, and the drum voice on their requests."""

from __future__ import annotations

from collections import deque

import pytest

from companion.core.engine import Engine, EngineSettings
from companion.core.events import Cancel, ClockStop, ControlChange, Note, NoteOff, NoteOn, RequestAnswer
from companion.worker.drum_voice import DrumAsk, DrumGenerator

BAR = 1920


def _requests(commands: list) -> list[RequestAnswer]:
    return [c for c in commands if isinstance(c, RequestAnswer)]


def _run(engine: Engine, start: int, end: int, step: int = 60) -> list:
    out: list = []
    for t in range(start, end, step):
        out += engine.tick(t)
    return out


def test_each_bar_is_asked_for_a_bar_ahead_with_the_phrase_ends_marked() -> None:
    engine = Engine(EngineSettings(mode="drums", max_bars=2, seed=4))
    first = _requests(engine.tick(0))
    assert [(r.start_ticks, r.end_ticks) for r in first] == [(BAR, 2 * BAR)]  # a beat of lead, then the bar line
    later = _requests(_run(engine, 60, 4 * BAR))
    assert [r.start_ticks for r in later] == [2 * BAR, 3 * BAR, 4 * BAR]
    for r in later:  # bar k asked for once bar k - 1 started
        assert r.settings["drums"]["bar_index"] == r.start_ticks // BAR - 1
    assert [r.settings["drums"]["phrase_end"] for r in first + later] == [False, True, False, True]
    assert [r.seed for r in first + later] == [4, 5, 6, 7]


def test_the_request_carries_the_players_last_bar() -> None:
    engine = Engine(EngineSettings(mode="drums"))
    engine.tick(0)
    for k in range(4):  # four loud quarter notes in bar 1 (ticks 1920..3840)
        engine.handle(NoteOn(0, 60, 120), BAR + k * 480)
        engine.handle(NoteOff(0, 60), BAR + k * 480 + 200)
    asked = _requests(_run(engine, BAR, 3 * BAR + 60))
    bar3 = next(r for r in asked if r.start_ticks == 3 * BAR)  # asked for at tick 3840, when bar 1 is complete
    player = bar3.settings["drums"]["player"]
    assert player["notes"] == 4 and player["taps"][0] == pytest.approx(120 / 127) and player["taps"][1] == 0
    assert bar3.settings["drums"]["before"]["notes"] == 0


def test_a_stop_cancels_every_bar_and_the_player_brings_the_drummer_back() -> None:
    engine = Engine(EngineSettings(mode="drums"))
    _run(engine, 0, BAR + 60)
    stopped = engine.handle(ClockStop(), BAR + 100)
    assert {c.tag for c in stopped if isinstance(c, Cancel)} and all(c.how == "stop" for c in stopped)
    assert not _requests(_run(engine, BAR + 120, 4 * BAR))  # silent until the player plays
    engine.handle(NoteOn(0, 62, 90), 4 * BAR + 10)
    back = _requests(engine.tick(4 * BAR + 20))
    assert [r.start_ticks for r in back] == [5 * BAR]


def test_the_clock_going_back_starts_the_drummer_over() -> None:
    engine = Engine(EngineSettings(mode="drums"))
    _run(engine, 0, 5 * BAR)
    commands = engine.tick(0)  # the DAW's Start: the song position is 0 again
    assert any(isinstance(c, Cancel) for c in commands)
    assert [r.start_ticks for r in _requests(commands)] == [BAR]


def test_drum_answers_answer_a_call_with_a_break_on_its_accents() -> None:
    engine = Engine(EngineSettings(mode="drum_answers", silence_beats=1.0, response_bars=2))
    for k in range(3):
        engine.handle(NoteOn(0, 60 + k, 100 if k == 0 else 50), k * 480)
        engine.handle(NoteOff(0, 60 + k), k * 480 + 400)
    answers = _requests(_run(engine, 1500, 3 * BAR))
    assert len(answers) == 1
    drums = answers[0].settings["drums"]
    assert answers[0].tag.startswith("drum-answer-") and drums["answer"] is True
    assert drums["player"]["notes"] == 3 and answers[0].end_ticks - answers[0].start_ticks == 2 * BAR


def _ends(requests: list[RequestAnswer], key: str) -> list[int]:
    return [r.start_ticks // BAR for r in requests if r.settings["drums"][key]]


def test_a_cued_section_change_turns_the_next_bar_that_can_change_into_a_fill_and_restarts_the_phrases() -> None:
    """The foot switch (trigger_cc) in bar 2 with more than a beat left: bar 3, already asked for as an ordinary
    bar, is asked again as the section's last (cancelled first); the phrases count again from bar 4."""
    engine = Engine(EngineSettings(mode="drums", max_bars=4, trigger_cc=80))
    asked = _requests(_run(engine, 0, 2 * BAR + 60))  # bars 1..3 asked for; bar 2 plays
    assert [r.start_ticks // BAR for r in asked] == [1, 2, 3]
    cue = engine.handle(ControlChange(0, 80, 127), 2 * BAR + 600)
    cancelled = [c for c in cue if isinstance(c, Cancel)]
    assert [(c.tag, c.from_ticks) for c in cancelled] == [(asked[-1].tag, 3 * BAR)]
    again = _requests(cue)
    assert [r.start_ticks // BAR for r in again] == [3] and again[0].tag != asked[-1].tag
    assert again[0].settings["drums"]["section_end"] and again[0].settings["drums"]["phrase_end"]
    later = _requests(_run(engine, 2 * BAR + 660, 12 * BAR))
    assert [r.start_ticks // BAR for r in later] == list(range(4, 13))
    # the old phrases would have ended on bars 4, 8, 12; the new section's end on 7 and 11
    assert _ends(later, "phrase_end") == [7, 11] and not _ends(later, "section_end")
    assert engine.handle(ControlChange(0, 80, 0), 12 * BAR) == []  # the switch released: nothing


def test_a_cue_in_the_last_beat_ends_the_section_a_bar_later_and_a_trigger_note_cues_too() -> None:
    engine = Engine(EngineSettings(mode="drums", max_bars=4, trigger_note=24))
    _run(engine, 0, 2 * BAR + 60)
    cue = engine.handle(NoteOn(0, 24, 100), 3 * BAR - 100)  # bar 3 starts in less than a beat: it stays
    assert not [c for c in cue if isinstance(c, Cancel)]
    assert [(r.start_ticks // BAR, r.settings["drums"]["section_end"]) for r in _requests(cue)] == [(4, True)]
    later = _requests(_run(engine, 3 * BAR - 60, 10 * BAR))
    assert _ends(later, "phrase_end") == [8]


def test_the_voice_always_fills_a_sections_last_bar() -> None:
    engine = Engine(EngineSettings(mode="drums", max_bars=4, trigger_cc=80))
    _run(engine, 0, 2 * BAR + 60)
    request = _requests(engine.handle(ControlChange(0, 80, 100), 2 * BAR + 100))[0]
    settings = {**request.settings, "drum_fill_rate": 0.0, "bpm": 100.0}  # no phrase-end fills at all
    voice = RecordingVoice()
    list(voice.stream(RequestAnswer(request.phrase, request.start_ticks, request.end_ticks, request.tag,
                                    request.seed, None, settings)))
    assert voice.asks and all(ask.fill for ask in voice.asks)


class RecordingVoice(DrumGenerator):
    """The drum voice's planning without a model: records what each bar was asked to be."""

    def __init__(self) -> None:  # no checkpoint to load
        self.plans = deque(maxlen=16)
        self.asks: list[DrumAsk] = []

    def bar(self, ask: DrumAsk, bar_start_ticks: int, bar_ticks: int, seed: int,
            temperature: float = 1.0, feel_seed: int | None = None) -> list[Note]:
        self.asks.append(ask)
        return []


@pytest.fixture(scope="module")
def voice() -> DrumGenerator:
    return DrumGenerator()


def _bar_request(engine_settings: EngineSettings, extras: dict, at_ticks: int = 0) -> RequestAnswer:
    engine = Engine(engine_settings)
    request = _requests(_run(engine, 0, at_ticks + 60))[-1]
    return RequestAnswer(request.phrase, request.start_ticks, request.end_ticks, request.tag, request.seed, None,
                         {**extras, **request.settings, "bpm": 100.0})


def test_the_voice_plays_a_fill_on_a_phrase_end_on_the_presets_channel(voice: DrumGenerator) -> None:
    extras = {"drum_fill_rate": 1.0, "drum_channel": 3, "drum_humanize": 0.0, "drum_style": "funk"}
    request = _bar_request(EngineSettings(mode="drums", max_bars=2), extras, at_ticks=BAR)  # bar index 1: the end
    notes = list(voice.stream(request))
    assert voice.plans[-1].fill and voice.plans[-1].start_ticks == 2 * BAR
    assert notes and all(n.channel == 3 and 2 * BAR <= n.start_ticks < 3 * BAR for n in notes)
    assert all((n.start_ticks - 2 * BAR) % 120 == 0 for n in notes)  # humanize 0: on the 16th grid
    plain = _bar_request(EngineSettings(mode="drums", max_bars=2), extras)  # bar index 0: no fill
    list(voice.stream(plain))
    assert not voice.plans[-1].fill


def test_a_muted_drummer_plays_nothing_and_a_bad_style_fails_the_bar(voice: DrumGenerator) -> None:
    request = _bar_request(EngineSettings(mode="drums"), {"drum_mute": True})
    assert list(voice.stream(request)) == []
    with pytest.raises(ValueError, match="drum style"):
        list(voice.stream(_bar_request(EngineSettings(mode="drums"), {"drum_style": "polka"})))
