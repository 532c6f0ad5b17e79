"""The variation and morph modes, driven tick by tick through the pure engine with a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from companion.core.engine import ChangeSettings, Engine, EngineSettings, Regenerate, StorePhrase, available_modes
from companion.core.events import PPQ, Cancel, Command, Log, Note, NoteOff, NoteOn, RequestAnswer

BAR = 4 * PPQ
STEP_TICKS = 10  # how often the fake clock ticks the engine


class FakeClock:
    """Musical time that only moves when the test says so, ticking the engine on the way."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.now_ticks = 0
        self.commands: list[Command] = []

    def advance_to(self, ticks: int) -> None:
        while self.now_ticks < ticks:
            self.now_ticks = min(ticks, self.now_ticks + STEP_TICKS)
            self.commands += self.engine.tick(self.now_ticks)

    def play(self, notes: list[tuple[int, int, int]]) -> None:
        """(pitch, start_ticks, duration_ticks) in time order of their events."""
        events: list[tuple[int, int, object]] = []
        for pitch, start, duration in notes:
            events.append((start, 1, NoteOn(0, pitch, 90)))
            events.append((start + duration, 0, NoteOff(0, pitch)))
        for at, _, message in sorted(events, key=lambda e: (e[0], e[1])):
            self.advance_to(at)
            self.commands += self.engine.handle(message, at)  # type: ignore[arg-type]

    def requests(self) -> list[RequestAnswer]:
        return [c for c in self.commands if isinstance(c, RequestAnswer)]


def _melody(first_bar: int, bars: int = 2) -> list[tuple[int, int, int]]:
    """Quarter notes filling `bars` bars from bar line `first_bar`, the last one a little short."""
    start = first_bar * BAR
    return [(60 + (i % 5), start + i * PPQ, PPQ - 20) for i in range(4 * bars)]


def _engine(**changes: object) -> tuple[Engine, FakeClock]:
    engine = Engine(EngineSettings(**changes))  # type: ignore[arg-type]
    return engine, FakeClock(engine)


def test_the_modes_are_found() -> None:
    assert {"variation", "morph"} <= set(available_modes())


def test_a_variation_is_asked_for_on_the_next_bar_with_its_seed() -> None:
    engine, clock = _engine(mode="variation", seed=100)
    clock.play(_melody(1))  # bars 2-3 (ticks BAR..3*BAR), silence after
    clock.advance_to(4 * BAR)
    [request] = clock.requests()
    # the phrase ends 1.5 beats after the last note-off (in bar 4), so the answer starts on bar 5
    assert request.start_ticks == 4 * BAR
    assert request.end_ticks - request.start_ticks == 2 * BAR  # as long as the phrase
    assert request.settings["vae"] == {"op": "vary", "seed": 101, "bars": 2}
    assert request.seed == 101 and "seed101" in request.tag
    assert [n.pitch for n in request.phrase.notes] == [p for p, _, _ in _melody(1)]
    assert engine.snapshot()["last_seed"] == 101


def test_nothing_is_asked_before_the_phrase_ends() -> None:
    _, clock = _engine(mode="variation")
    clock.play(_melody(0))
    clock.advance_to(2 * BAR + PPQ)  # 1 beat of silence: the phrase is still open
    assert clock.requests() == []
    clock.advance_to(2 * BAR + 2 * PPQ)
    assert len(clock.requests()) == 1


def test_a_one_bar_phrase_gets_a_one_bar_variation() -> None:
    _, clock = _engine(mode="variation")
    clock.play(_melody(0, bars=1))
    clock.advance_to(3 * BAR)
    [request] = clock.requests()
    assert request.end_ticks - request.start_ticks == BAR and request.settings["vae"]["bars"] == 1


def test_regenerate_replays_the_same_seed_or_takes_a_new_one() -> None:
    engine, clock = _engine(mode="variation", seed=0)
    clock.play(_melody(0))
    clock.advance_to(3 * BAR)
    [first] = clock.requests()
    again = [c for c in engine.intent(Regenerate(new_seed=False)) if isinstance(c, RequestAnswer)]
    fresh = [c for c in engine.intent(Regenerate(new_seed=True)) if isinstance(c, RequestAnswer)]
    assert again[0].settings["vae"]["seed"] == first.settings["vae"]["seed"]
    assert fresh[0].settings["vae"]["seed"] != first.settings["vae"]["seed"]


def test_the_player_coming_back_in_stops_the_variation() -> None:
    engine, clock = _engine(mode="variation")
    clock.play(_melody(0))
    clock.advance_to(3 * BAR + 100)
    [request] = clock.requests()
    commands = engine.handle(NoteOn(0, 64, 90), 3 * BAR + 100)
    assert Cancel(request.tag, 3 * BAR + 100, "stop") in commands


def test_regenerate_with_nothing_played_says_so() -> None:
    engine, _ = _engine(mode="variation")
    [log] = engine.intent(Regenerate())
    assert isinstance(log, Log) and "play a phrase first" in log.text


# --- morph ---------------------------------------------------------------------------------------------------


def _two_phrases(clock: FakeClock) -> Iterator[RequestAnswer]:
    clock.play(_melody(0))
    clock.advance_to(3 * BAR)
    clock.play([(67, 4 * BAR, PPQ), (69, 4 * BAR + PPQ, 2 * PPQ)])  # a 1-bar phrase in bar 5
    clock.advance_to(7 * BAR)
    return iter(clock.requests())


def test_morph_waits_for_a_second_phrase() -> None:
    _, clock = _engine(mode="morph")
    clock.play(_melody(0))
    clock.advance_to(3 * BAR)
    assert clock.requests() == []
    assert any(isinstance(c, Log) and "one more phrase" in c.text for c in clock.commands)


def test_morph_goes_from_the_older_phrase_to_the_newer() -> None:
    _, clock = _engine(mode="morph", morph_steps=3)
    [request] = list(_two_phrases(clock))
    vae = request.settings["vae"]
    assert vae["op"] == "morph" and vae["steps"] == 3 and vae["bars"] == 2  # the longer of the two
    assert [n.pitch for n in request.phrase.notes] == [67, 69]  # B: the newer phrase
    assert vae["other"][0] == [60, 90, 0, PPQ - 20]  # A, relative to its bar line
    assert request.start_ticks == 6 * BAR  # phrase B ended in bar 6 (after 1.5 beats of silence)
    assert request.end_ticks - request.start_ticks == 3 * 2 * BAR


def test_morph_steps_is_a_validated_setting() -> None:
    with pytest.raises(ValueError, match="morph_steps"):
        EngineSettings(morph_steps=1)
    engine, _ = _engine(mode="morph")
    [log] = engine.intent(ChangeSettings({"morph_steps": 99}))
    assert isinstance(log, Log) and "morph_steps" in log.text
    assert engine.intent(ChangeSettings({"morph_steps": 6})) == [] and engine.settings.morph_steps == 6


def test_a_third_phrase_morphs_from_the_second() -> None:
    _, clock = _engine(mode="morph")
    list(_two_phrases(clock))
    clock.play([(72, 8 * BAR, PPQ)])
    clock.advance_to(11 * BAR)
    requests = clock.requests()
    assert len(requests) == 2
    assert [n[0] for n in requests[1].settings["vae"]["other"]] == [67, 69]
    assert [n.pitch for n in requests[1].phrase.notes] == [72]
    # the new morph stops the old one where it starts
    assert any(isinstance(c, Cancel) and c.tag == requests[0].tag for c in clock.commands)


def test_notes_in_a_request_stay_relative_to_their_own_bar_line() -> None:
    _, clock = _engine(mode="variation")
    clock.play([(62, 5 * BAR + PPQ, PPQ)])
    clock.advance_to(8 * BAR)
    [request] = clock.requests()
    assert request.phrase.start_ticks == 5 * BAR
    note: Note = request.phrase.notes[0]
    assert note.start_ticks - request.phrase.start_ticks == PPQ


# --- stored phrases (morph between two the player kept) ------------------------------------------------------


def _store(clock: FakeClock) -> list[Command]:
    commands = clock.engine.intent(StorePhrase())
    clock.commands += commands
    return commands


def _logs(commands: list[Command]) -> str:
    return " ".join(c.text for c in commands if isinstance(c, Log))


def test_storing_needs_a_phrase_and_is_for_morph_mode() -> None:
    _, clock = _engine(mode="morph")
    assert "play a phrase first" in _logs(_store(clock))
    _, other = _engine(mode="variation")
    assert "morph mode" in _logs(_store(other))


def test_a_stored_phrase_is_a_for_every_morph_after_it() -> None:
    _, clock = _engine(mode="morph")
    clock.play(_melody(0))  # A
    clock.advance_to(3 * BAR)
    assert "stored A" in _logs(_store(clock))
    assert "already A" in _logs(_store(clock))  # nothing new played yet
    clock.play([(67, 4 * BAR, PPQ)])
    clock.advance_to(7 * BAR)
    clock.play([(72, 8 * BAR, PPQ)])
    clock.advance_to(11 * BAR)
    first, second = clock.requests()
    assert [n[0] for n in first.settings["vae"]["other"]] == [60, 61, 62, 63, 64, 60, 61, 62]
    assert [n[0] for n in second.settings["vae"]["other"]] == [60, 61, 62, 63, 64, 60, 61, 62]  # still A
    assert [n.pitch for n in second.phrase.notes] == [72]


def test_storing_b_plays_a_to_b_at_once_and_regenerate_replays_it() -> None:
    engine, clock = _engine(mode="morph", morph_steps=4)
    clock.play(_melody(0))
    clock.advance_to(3 * BAR)
    _store(clock)
    clock.play([(67, 4 * BAR, PPQ), (69, 4 * BAR + PPQ, PPQ)])
    clock.advance_to(5 * BAR + 2 * PPQ)
    [auto] = clock.requests()  # the phrase itself morphs from A as it ends
    commands = _store(clock)
    assert "stored B" in _logs(commands)
    assert any(isinstance(c, Cancel) and c.tag == auto.tag for c in commands)  # the running morph gives way
    request = [c for c in commands if isinstance(c, RequestAnswer)][-1]
    assert request.settings["vae"]["other"][0][0] == 60 and [n.pitch for n in request.phrase.notes] == [67, 69]
    assert request.start_ticks == 6 * BAR and request.settings["vae"]["steps"] == 4
    again = [c for c in engine.intent(Regenerate(new_seed=False)) if isinstance(c, RequestAnswer)][-1]
    assert again.settings["vae"] == request.settings["vae"]  # same ends, same seed
    assert engine.mode.snapshot(clock.now_ticks)["stored"] == 2
    clock.play([(74, 8 * BAR, PPQ)])
    clock.advance_to(11 * BAR)
    assert "stored A" in _logs(_store(clock))  # a third store starts a new pair
    assert engine.mode.snapshot(clock.now_ticks)["stored"] == 1
