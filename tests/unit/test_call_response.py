"""The call-and-response mode alone: beat or bar start, lead time, stop vs duck, expiry, regenerate."""

from __future__ import annotations

import itertools

from companion.core.engine import EngineSettings
from companion.core.events import PPQ, Cancel, Log, Note, NoteOn, Phrase, RequestAnswer
from companion.core.modes.base import ModeContext
from companion.core.modes.call_response import CallResponseMode
from companion.core.theory import Key

BAR = 4 * PPQ


def context(**changes: object) -> ModeContext:
    settings = EngineSettings(**changes)  # type: ignore[arg-type]
    counter = itertools.count(1)
    return ModeContext(
        settings, Key(2, "minor"), settings.beat_ticks, settings.bar_ticks, lambda: next(counter)
    )


def phrase(end_ticks: int) -> Phrase:
    return Phrase((Note(62, 80, 0, 200), Note(65, 80, 240, 200)), 0, end_ticks, BAR)


def test_next_bar_vs_next_beat() -> None:
    ctx = context(response_start="bar", lead_ticks=0)
    [request] = CallResponseMode().phrase_ended(phrase(BAR + 1), BAR + 1, ctx)
    assert isinstance(request, RequestAnswer) and request.start_ticks == 2 * BAR
    ctx = context(response_start="beat", lead_ticks=0)
    [request] = CallResponseMode().phrase_ended(phrase(BAR + 1), BAR + 1, ctx)
    assert isinstance(request, RequestAnswer) and request.start_ticks == BAR + PPQ


def test_exactly_on_the_line_with_no_lead_starts_there() -> None:
    ctx = context(response_start="bar", lead_ticks=0)
    [request] = CallResponseMode().phrase_ended(phrase(BAR), BAR, ctx)
    assert request.start_ticks == BAR  # type: ignore[union-attr]


def test_lead_time_pushes_to_the_next_line() -> None:
    ctx = context(response_start="beat", lead_ticks=PPQ // 4)
    [request] = CallResponseMode().phrase_ended(phrase(PPQ - 10), PPQ - 10, ctx)
    assert request.start_ticks == 2 * PPQ  # type: ignore[union-attr]


def test_late_poll_plans_from_now() -> None:
    ctx = context(response_start="beat", lead_ticks=0)
    [request] = CallResponseMode().phrase_ended(phrase(PPQ), 3 * PPQ + 5, ctx)
    assert request.start_ticks == 4 * PPQ  # type: ignore[union-attr]


def test_request_carries_length_key_seed_and_settings() -> None:
    ctx = context(response_bars=3, seed=40)
    [request] = CallResponseMode().phrase_ended(phrase(BAR), BAR, ctx)
    assert isinstance(request, RequestAnswer)
    assert request.end_ticks - request.start_ticks == 3 * BAR
    assert request.key == (2, "minor")
    assert (request.tag, request.seed) == ("answer-1", 41)
    assert request.settings["response_bars"] == 3


def test_empty_phrase_asks_for_nothing() -> None:
    assert CallResponseMode().phrase_ended(Phrase((), 0, BAR, BAR), BAR, context()) == []


def test_duck_then_new_phrase_stops_the_ducked_answer_where_the_new_one_starts() -> None:
    ctx = context(on_player_resume="duck", lead_ticks=0)
    mode = CallResponseMode()
    [first] = mode.phrase_ended(phrase(BAR), BAR, ctx)
    assert mode.handle(NoteOn(0, 60, 80), BAR + 100, ctx, True) == [Cancel("answer-1", BAR + 100, "duck")]
    commands = mode.phrase_ended(phrase(BAR + 1000), BAR + 1000, ctx)
    assert commands[0] == Cancel("answer-1", 2 * BAR, "stop")
    assert isinstance(commands[1], RequestAnswer) and commands[1].tag == "answer-2"
    assert first.end_ticks == 3 * BAR  # type: ignore[union-attr]


def test_only_note_ons_resume() -> None:
    ctx = context()
    mode = CallResponseMode()
    mode.phrase_ended(phrase(BAR), BAR, ctx)
    assert mode.handle(NoteOn(0, 60, 80), BAR + 10, ctx, player_note_on=False) == []
    assert mode.snapshot(BAR + 10)["answer_due"]


def test_tick_expires_answers_and_snapshot_follows() -> None:
    ctx = context(lead_ticks=0)
    mode = CallResponseMode()
    [request] = mode.phrase_ended(phrase(BAR), BAR, ctx)
    assert mode.snapshot(BAR)["answering"] is True  # starts at BAR exactly
    mode.tick(request.end_ticks, ctx)  # type: ignore[union-attr]
    snap = mode.snapshot(request.end_ticks)  # type: ignore[union-attr]
    assert snap["answers"] == [] and not snap["answering"]
    assert mode.cancel(request.end_ticks) == []  # type: ignore[union-attr]


def test_regenerate() -> None:
    ctx = context(seed=0, lead_ticks=0)
    mode = CallResponseMode()
    [log] = mode.regenerate(0, ctx, True)
    assert isinstance(log, Log)
    [first] = mode.phrase_ended(phrase(BAR), BAR, ctx)
    cancel, again = mode.regenerate(BAR + 50, ctx, new_seed=False)
    assert cancel == Cancel("answer-1", BAR + 50, "stop")
    assert isinstance(again, RequestAnswer) and again.seed == first.seed and again.start_ticks == 2 * BAR  # type: ignore[union-attr]
