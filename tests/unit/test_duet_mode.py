"""The duet mode alone, tick by tick: spans on the beat, refills, replacement on new notes, window, rest, stop."""

from __future__ import annotations

import itertools

from companion.core.engine import Engine, EngineSettings
from companion.core.events import PPQ, Cancel, Command, Log, NoteOff, NoteOn, RequestAnswer
from companion.core.modes.base import ModeContext
from companion.core.modes.duet import DuetMode
from companion.core.theory import Key

BEAT = PPQ
BAR = 4 * PPQ
STEP = 10  # ticks between engine ticks in these tests (the runtime ticks every 2 ms, about 2-10 ticks)


G_MAJOR = Key(7, "major")


def context(key: Key | None = G_MAJOR, **changes: object) -> ModeContext:
    settings = EngineSettings(mode="duet", **changes)  # type: ignore[arg-type]
    counter = itertools.count(1)
    return ModeContext(settings, key, settings.beat_ticks, settings.bar_ticks, lambda: next(counter))


class FakePlayer:
    """Drives a mode like the engine does: messages at their ticks, `tick` every STEP ticks in between."""

    def __init__(self, mode: DuetMode, ctx: ModeContext) -> None:
        self.mode = mode
        self.ctx = ctx
        self.now = 0
        self.log: list[tuple[int, Command]] = []

    def run_until(self, ticks: int) -> None:
        while self.now < ticks:
            self.now = min(ticks, self.now + STEP)
            self.log += [(self.now, c) for c in self.mode.tick(self.now, self.ctx)]

    def play(self, pitch: int, at: int, length: int, velocity: int = 90) -> None:
        self.run_until(at)
        self.log += [(at, c) for c in self.mode.handle(NoteOn(0, pitch, velocity), at, self.ctx, True)]
        self.run_until(at + length)
        self.log += [(at + length, c) for c in self.mode.handle(NoteOff(0, pitch), at + length, self.ctx, False)]

    def requests(self) -> list[tuple[int, RequestAnswer]]:
        return [(t, c) for t, c in self.log if isinstance(c, RequestAnswer)]

    def cancels(self) -> list[tuple[int, Cancel]]:
        return [(t, c) for t, c in self.log if isinstance(c, Cancel)]


def test_a_silent_player_gets_no_duet() -> None:
    player = FakePlayer(DuetMode(), context())
    player.run_until(8 * BAR)
    assert player.log == []


def test_first_note_starts_a_span_one_beat_after_the_next_beat() -> None:
    player = FakePlayer(DuetMode(), context())
    player.play(67, BAR + 100, 200)  # just after bar 2 beat 1
    player.run_until(BAR + 2 * BEAT - 1)
    [(issued, request)] = player.requests()
    assert issued == BAR + BEAT  # on the next beat line
    assert request.start_ticks == BAR + 2 * BEAT  # one beat later: the generator has a beat to work
    assert request.end_ticks - request.start_ticks == 4 * BAR  # a phrase's worth: the rest is replaced as you play
    assert request.settings["task"] == "duet" and request.tag.startswith("duet-")
    assert [n.pitch for n in request.phrase.notes] == [67]
    assert request.phrase.start_ticks % BAR == 0 and request.phrase.start_ticks <= BAR + 100
    assert request.phrase.end_ticks == issued


def test_one_plan_per_beat_however_often_it_ticks() -> None:
    mode, ctx = DuetMode(), context()
    mode.handle(NoteOn(0, 60, 90), 5, ctx, True)
    issued = [c for t in range(5, BEAT, 1) for c in mode.tick(t, ctx)]
    assert issued == []
    issued = [c for t in range(BEAT, 2 * BEAT, 1) for c in mode.tick(t, ctx)]
    assert len([c for c in issued if isinstance(c, RequestAnswer)]) == 1


def test_with_an_unchanged_context_spans_follow_each_other_without_gap_or_overlap() -> None:
    player = FakePlayer(DuetMode(span_bars=1, idle_bars=8, hear_itself=True), context())
    player.play(67, 10, BEAT)
    player.run_until(5 * BAR)
    requests = player.requests()
    assert len(requests) >= 4
    assert player.cancels() == []  # nothing new from the player: nothing replaced
    for (_, a), (_, b) in itertools.pairwise(requests):
        assert b.start_ticks == a.end_ticks
    for issued, request in requests:
        assert request.start_ticks - issued >= BEAT  # always at least a beat of lead
        assert request.start_ticks % BEAT == 0
    later = requests[-1][1]
    assert later.settings["continues"] == [r.tag for _, r in requests[:-1]][-16:]


def test_a_new_note_replaces_the_tentative_part_from_the_next_beat() -> None:
    player = FakePlayer(DuetMode(span_bars=1, hear_itself=True), context())
    player.play(67, 10, 200)
    player.run_until(BEAT + 1)
    [(_, first)] = player.requests()
    assert (first.start_ticks, first.end_ticks) == (2 * BEAT, 2 * BEAT + BAR)
    player.play(71, 2 * BEAT + 40, 200)  # the player adds a note while the first span plays
    player.run_until(4 * BEAT)
    [(issued, second)] = player.requests()[1:]
    assert issued == 3 * BEAT and second.start_ticks == 4 * BEAT
    assert [n.pitch for n in second.phrase.notes] == [67, 71]
    assert first.tag in second.settings["continues"]  # it hears what the duet itself played before
    [(cancel_at, cancel)] = player.cancels()
    assert cancel.tag == first.tag and cancel.from_ticks == second.start_ticks and cancel.how == "stop"
    # Issued just before the replacement (a 32nd early), not when it was planned: committed notes play on.
    assert issued < cancel_at < second.start_ticks and second.start_ticks - cancel_at <= BEAT // 8


def test_the_window_keeps_only_the_recent_bars() -> None:
    player = FakePlayer(DuetMode(context_bars=1, idle_bars=8), context())
    player.play(60, 10, 100)
    player.play(64, 3 * BAR + 10, 100)
    player.run_until(4 * BAR)
    issued, last = player.requests()[-1]
    assert [n.pitch for n in last.phrase.notes] == [64]
    assert last.phrase.start_ticks == (issued - BAR) // BAR * BAR  # the bar line a whole bar before


def test_a_held_note_is_in_the_context_with_its_length_so_far() -> None:
    mode, ctx = DuetMode(), context()
    mode.handle(NoteOn(0, 62, 90), 100, ctx, True)
    [request] = [c for t in range(100, BEAT + 1) for c in mode.tick(t, ctx)]
    [note] = request.phrase.notes  # type: ignore[union-attr]
    assert note.pitch == 62 and note.start_ticks == 100 and note.duration_ticks == BEAT - 100
    mode.handle(NoteOn(0, 64, 90), 2 * BEAT - 1, ctx, True)  # pressed a tick before the beat
    [request] = [c for t in range(BEAT + 1, 2 * BEAT + 1) for c in mode.tick(t, ctx)]
    fresh = [n for n in request.phrase.notes if n.pitch == 64]  # type: ignore[union-attr]
    assert fresh[0].duration_ticks == BEAT // 2  # counted as an 8th so far, not as a click


def test_the_duet_rests_when_the_player_stops_and_comes_back_with_the_player() -> None:
    player = FakePlayer(DuetMode(idle_bars=2), context())
    player.play(67, 10, 100)
    player.run_until(8 * BAR)
    starts = [r.start_ticks for _, r in player.requests()]
    assert starts and max(starts) <= 10 + 2 * BAR + 2 * BEAT  # nothing planned long after the last note
    count = len(starts)
    player.play(69, 8 * BAR + 10, 100)
    player.run_until(8 * BAR + 2 * BEAT)
    assert len(player.requests()) == count + 1


def test_once_the_player_stops_the_duet_plays_one_span_on_then_rests() -> None:
    player = FakePlayer(DuetMode(idle_bars=1), context())
    for i, pitch in enumerate([67, 69, 71, 72, 74, 72, 71, 69]):
        player.play(pitch, 10 + i * BEAT, BEAT - 20)  # two bars of quarters, then silence
    player.run_until(12 * BAR)
    last_issued, last = player.requests()[-1]
    assert last_issued < 2 * BAR + BEAT  # nothing asked once the player has stopped...
    assert last.end_ticks - last.start_ticks == 4 * BAR  # ...the last span, one line of 4 bars, plays out
    assert [n.pitch for n in last.phrase.notes][-8:] == [67, 69, 71, 72, 74, 72, 71, 69]  # the 4-bar window
    assert not [c for c in player.cancels() if c[1].tag == last.tag]


def test_a_long_held_note_keeps_the_duet_going() -> None:
    player = FakePlayer(DuetMode(idle_bars=1), context())
    player.play(60, 10, 4 * BAR)  # one note held for four bars
    assert max(r.end_ticks for _, r in player.requests()) >= 4 * BAR


def test_by_default_the_duet_listens_to_the_player_only() -> None:
    player = FakePlayer(DuetMode(span_bars=1, idle_bars=8), context())
    player.play(67, 10, BEAT)
    player.run_until(3 * BAR)
    assert len(player.requests()) >= 2
    assert all(r.settings["continues"] == [] for _, r in player.requests())


def test_key_from_the_engine_else_estimated_from_the_window_and_none_without_key_lock() -> None:
    player = FakePlayer(DuetMode(), context(key=Key(2, "minor")))
    player.play(60, 10, 100)
    player.run_until(BEAT + 1)
    assert player.requests()[0][1].key == (2, "minor")

    player = FakePlayer(DuetMode(), context(key=None))
    for i, pitch in enumerate([60, 64, 67, 72, 71, 67, 62, 60, 65, 64, 62, 60, 67, 64, 60, 60]):
        player.play(pitch, 10 + i * 100, 90)
    assert player.requests()[-1][1].key == (0, "major")

    player = FakePlayer(DuetMode(), context(key=Key(2, "minor"), key_lock=False))
    player.play(60, 10, 100)
    player.run_until(BEAT + 1)
    assert player.requests()[0][1].key is None


def test_cancel_stops_every_live_span_and_waits_for_the_player() -> None:
    player = FakePlayer(DuetMode(), context())
    player.play(67, 10, 100)
    player.run_until(3 * BEAT)
    live = {r.tag for _, r in player.requests() if r.end_ticks > player.now}
    cancels = player.mode.cancel(player.now)
    assert {c.tag for c in cancels if isinstance(c, Cancel)} == live
    assert all(c.from_ticks == player.now for c in cancels if isinstance(c, Cancel))
    count = len(player.requests())
    player.run_until(4 * BAR)
    assert len(player.requests()) == count


def test_regenerate_replaces_from_the_next_beat_with_the_same_or_a_new_seed() -> None:
    mode, ctx = DuetMode(), context()
    assert isinstance(mode.regenerate(0, ctx, True)[0], Log)  # nothing to play along with yet
    mode.handle(NoteOn(0, 67, 90), 10, ctx, True)
    [first] = [c for t in range(10, BEAT + 1) for c in mode.tick(t, ctx)]
    [again] = mode.regenerate(BEAT + 20, ctx, new_seed=False)
    assert isinstance(first, RequestAnswer) and isinstance(again, RequestAnswer)
    assert again.seed == first.seed and again.start_ticks == 3 * BEAT
    [other] = mode.regenerate(BEAT + 30, ctx, new_seed=True)
    assert isinstance(other, RequestAnswer) and other.seed != first.seed


def test_the_engine_runs_the_duet_from_the_players_notes() -> None:
    engine = Engine(EngineSettings(mode="duet", seed=5))
    engine.handle(NoteOn(0, 64, 90), 30)
    engine.handle(NoteOff(0, 64), 200)
    commands = [c for t in range(0, 2 * BEAT, 5) for c in engine.tick(t)]
    [request] = [c for c in commands if isinstance(c, RequestAnswer)]
    assert request.start_ticks == 2 * BEAT and request.settings["task"] == "duet"
    assert engine.snapshot()["duet_spans"] == 1


def test_the_snapshot_says_where_the_tentative_part_of_the_plan_starts() -> None:
    player = FakePlayer(DuetMode(), context())
    assert player.mode.snapshot(0)["tentative_from"] is None  # no plan, nothing tentative
    player.play(67, BAR + 100, 200)
    player.run_until(BAR + BEAT + STEP)  # the first span is planned on this beat line
    assert player.mode.snapshot(player.now)["tentative_from"] == BAR + 2 * BEAT  # the next plan may replace these
    player.run_until(BAR + 2 * BEAT + STEP)  # a beat on: the horizon moves with it
    assert player.mode.snapshot(player.now)["tentative_from"] == BAR + 3 * BEAT
