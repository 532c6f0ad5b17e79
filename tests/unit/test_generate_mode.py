"""The generate mode alone, tick by tick (spans, length, stop, restart, regenerate); and the offline piece writer."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path

import mido
import pytest

from companion.core.engine import Engine, EngineSettings, PanicIntent
from companion.core.events import PPQ, Cancel, Command, Log, Note, RequestAnswer
from companion.core.modes.base import ModeContext
from companion.core.modes.generate import GenerateMode
from companion.core.theory import Key
from companion.errors import InputFileError, UsageError
from companion.offline.piece import generate_file, write_generated

BEAT = PPQ
BAR = 4 * PPQ
STEP = 10


def context(key: Key | None = None, **changes: object) -> ModeContext:
    settings = EngineSettings(mode="generate", **changes)  # type: ignore[arg-type]
    counter = itertools.count(1)
    return ModeContext(settings, key, settings.beat_ticks, settings.bar_ticks, lambda: next(counter))


def run(mode: GenerateMode, ctx: ModeContext, start: int, end: int) -> list[tuple[int, Command]]:
    return [(t, c) for t in range(start, end, STEP) for c in mode.tick(t, ctx)]


def requests(log: list[tuple[int, Command]]) -> list[tuple[int, RequestAnswer]]:
    return [(t, c) for t, c in log if isinstance(c, RequestAnswer)]


def test_starts_on_its_own_on_the_bar_after_a_beat_of_lead() -> None:
    log = run(GenerateMode(), context(seed=4), 3 * BEAT + 200, 3 * BEAT + 210)
    [(issued, first)] = requests(log)
    assert first.start_ticks == 2 * BAR  # bar 2 is less than a beat away: the next bar line
    assert first.end_ticks - first.start_ticks == 2 * BAR
    assert first.settings["task"] == "generate" and first.settings["continues"] == []
    assert first.phrase.notes == () and first.tag.startswith("generate-")
    assert first.key is not None and first.key[1] in ("major", "minor")


def test_spans_follow_each_other_and_only_one_waits_ahead() -> None:
    mode, ctx = GenerateMode(span_bars=2), context()
    log = run(mode, ctx, 0, 12 * BAR)
    reqs = requests(log)
    assert len(reqs) >= 5
    for (_, a), (issued_b, b) in itertools.pairwise(reqs):
        assert b.start_ticks == a.end_ticks
        assert issued_b >= a.start_ticks  # requested once the one before started to play
        assert b.start_ticks - issued_b >= 2 * BAR - STEP  # a whole span of time to generate it
        assert a.tag in b.settings["continues"]
        # The prompt window: the piece's last bars (on bar lines), before this span.
        assert b.phrase.start_ticks % BAR == 0 and b.phrase.end_ticks == b.start_ticks
        assert b.start_ticks - b.phrase.start_ticks <= 4 * BAR
    assert len({r.key for _, r in reqs}) == 1  # one key for the whole piece
    assert len({r.seed for _, r in reqs}) == len(reqs)


def test_the_length_is_exact_and_the_piece_ends() -> None:
    mode, ctx = GenerateMode(length_bars=5, span_bars=2), context()
    log = run(mode, ctx, 0, 12 * BAR)
    spans = [(r.start_ticks, r.end_ticks) for _, r in requests(log)]
    assert spans == [(BAR, 3 * BAR), (3 * BAR, 5 * BAR), (5 * BAR, 6 * BAR)]
    ended = [(t, c) for t, c in log if isinstance(c, Log)]
    assert len(ended) == 1 and ended[0][0] >= 6 * BAR and "5 bars" in ended[0][1].text
    assert mode.snapshot(12 * BAR)["generating"] is False


def test_a_stop_ends_the_piece_until_regenerate() -> None:
    mode, ctx = GenerateMode(), context()
    log = run(mode, ctx, 0, 4 * BAR)
    live = {r.tag for _, r in requests(log) if r.end_ticks > 4 * BAR}
    cancels = mode.cancel(4 * BAR)
    assert {c.tag for c in cancels if isinstance(c, Cancel)} == live
    assert requests(run(mode, ctx, 4 * BAR, 10 * BAR)) == []  # a panic is not undone by the next tick
    [*_, again] = mode.regenerate(10 * BAR, ctx, new_seed=True)
    assert isinstance(again, RequestAnswer) and again.start_ticks == 11 * BAR
    assert again.settings["continues"] == []  # a new piece


def test_start_after_a_stop_plays_again_from_the_next_bar_line() -> None:
    """The DAW stops (the piece ends, nothing comes back by itself), then starts again: bar 1 is now, and the
    piece plays again from the bar line after a beat of lead."""
    mode, ctx = GenerateMode(), context()
    run(mode, ctx, 0, 4 * BAR)
    mode.cancel(4 * BAR)
    assert requests(run(mode, ctx, 4 * BAR, 6 * BAR)) == []
    assert mode.transport_start(0, ctx) == []  # nothing was left to cancel
    [(issued, request)] = requests(run(mode, ctx, 0, 10))
    assert request.start_ticks == BAR and request.settings["continues"] == []
    assert mode.snapshot(BAR)["generating"] is True


def test_a_start_while_playing_moves_the_piece_to_the_new_position() -> None:
    """A Link session's first start (or a DAW's Start) while the piece runs puts bar 1 near tick 0: what was
    planned further on is cancelled, and the piece goes on from the new position (it used to wait, silent, as long
    as it had played, for the playhead to reach its old plans)."""
    mode, ctx = GenerateMode(), context()
    log = run(mode, ctx, 0, 30 * BAR)
    live = {r.tag for _, r in requests(log) if r.end_ticks > 30 * BAR}
    cancels = mode.transport_start(30 * BAR, ctx)
    assert {c.tag for c in cancels if isinstance(c, Cancel)} == live and live
    after = requests(run(mode, ctx, 0, 8 * BAR))
    assert after and after[0][1].start_ticks == BAR
    assert len(after) >= 3 and all(r.start_ticks < 10 * BAR for _, r in after)  # a span ahead at most


def test_the_engine_hands_start_to_the_mode() -> None:
    from companion.core.events import ClockStart

    engine = Engine(EngineSettings(mode="generate"))
    for t in range(0, 20 * BAR, STEP):
        engine.tick(t)
    commands = engine.handle(ClockStart(), 20 * BAR)
    assert any(isinstance(c, Cancel) for c in commands)
    assert any(isinstance(c, RequestAnswer) and c.start_ticks == BAR for c in engine.tick(10))


def test_a_settings_change_restarts_the_piece_with_the_new_settings() -> None:
    mode, ctx = GenerateMode(), context(temperature=1.0)
    run(mode, ctx, 0, 2 * BAR)
    mode.cancel(2 * BAR)  # the engine cancels, then changes the settings
    warmer = dataclasses.replace(ctx, settings=ctx.settings.replace(temperature=1.3))
    [(issued, request)] = requests(run(mode, warmer, 2 * BAR, 2 * BAR + 20))
    assert request.start_ticks == 3 * BAR and request.settings["temperature"] == 1.3


def test_regenerate_with_the_same_seed_replays_the_piece() -> None:
    mode, ctx = GenerateMode(), context(seed=9)
    first = requests(run(mode, ctx, 0, 10))[0][1]
    again = [c for c in mode.regenerate(100, ctx, new_seed=False) if isinstance(c, RequestAnswer)][0]
    other = [c for c in mode.regenerate(200, ctx, new_seed=True) if isinstance(c, RequestAnswer)][0]
    assert (again.seed, again.key) == (first.seed, first.key)
    assert other.seed != first.seed


def test_style_from_the_constructor_and_key_from_the_session() -> None:
    [(_, request)] = requests(run(GenerateMode(style="chorale"), context(key=Key(9, "minor")), 0, 10))
    assert request.settings["style"] == "chorale" and request.key == (9, "minor")
    [(_, request)] = requests(run(GenerateMode(), context(key=Key(9, "minor"), key_lock=False), 0, 10))
    assert request.key is None


def test_the_engine_starts_generating_when_the_mode_is_selected() -> None:
    engine = Engine(EngineSettings(mode="generate"))
    commands = engine.tick(0)
    assert [type(c) for c in commands] == [RequestAnswer]
    assert engine.snapshot()["generating"] is True


def test_length_bars_from_the_settings_ends_the_piece_on_a_bar_line() -> None:
    mode, ctx = GenerateMode(span_bars=2), context(length_bars=3)
    log = run(mode, ctx, 0, 10 * BAR)
    assert [(r.start_ticks, r.end_ticks) for _, r in requests(log)] == [(BAR, 3 * BAR), (3 * BAR, 4 * BAR)]
    [(ended_at, ended)] = [(t, c) for t, c in log if isinstance(c, Log)]
    assert ended_at >= 4 * BAR and "3 bars" in ended.text
    assert mode.snapshot(10 * BAR)["generating"] is False


def test_length_bars_zero_plays_until_stopped() -> None:
    assert EngineSettings().length_bars == 0
    mode, ctx = GenerateMode(), context()
    reqs = requests(run(mode, ctx, 0, 40 * BAR))
    assert reqs[-1][1].end_ticks >= 40 * BAR and mode.snapshot(40 * BAR)["generating"] is True


@pytest.mark.parametrize("bad", [-1, 513, 2.5, "8"])
def test_length_bars_must_be_0_to_512(bad: object) -> None:
    with pytest.raises(ValueError, match="length_bars"):
        EngineSettings(length_bars=bad)  # type: ignore[arg-type]


class _TickClock:
    """A fixed 120 BPM timebase for the scheduler."""

    def __init__(self) -> None:
        from companion.core.timebase import Timebase

        self.tb = Timebase(120.0, origin_ns=0)

    def timebase(self) -> object:
        return self.tb


def test_a_piece_of_length_bars_stops_cleanly_through_generator_and_scheduler() -> None:
    """Engine -> Markov generator -> scheduler: every note of a 3-bar piece sounds and ends inside it."""
    from companion.live.scheduler import Scheduler
    from companion.worker.generators import MarkovGenerator

    sent: list[tuple[int, list[int]]] = []
    now = [0]
    clock = _TickClock()
    scheduler = Scheduler(lambda data: sent.append((now[0], list(data))), clock)  # type: ignore[arg-type]
    engine, generator = Engine(EngineSettings(mode="generate", length_bars=3, seed=5)), MarkovGenerator()
    for now[0] in range(0, 8 * BAR, PPQ // 8):
        for command in engine.tick(now[0]):
            if isinstance(command, RequestAnswer):
                scheduler.submit(list(generator.stream(command)), command.tag)
            elif isinstance(command, Cancel):
                scheduler.cancel(command.tag, command.from_ticks, command.how)
        scheduler.step(clock.tb.ns_at(now[0]))
    assert engine.snapshot()["generating"] is False and scheduler.sounding() == []
    ons = [t for t, d in sent if d[0] & 0xF0 == 0x90 and d[2] > 0]
    offs = [t for t, d in sent if d[0] & 0xF0 == 0x80 or (d[0] & 0xF0 == 0x90 and d[2] == 0)]
    piece_start, piece_end = BAR, 4 * BAR  # the bar line after a beat of lead, three bars on
    assert ons and len(ons) == len(offs)
    assert min(ons) >= piece_start and max(offs) <= piece_end
    assert max(offs) > piece_end - BAR  # it plays into its last bar


def test_the_ambient_preset_plays_until_stopped() -> None:
    from companion.presets.preset import load_preset

    settings = load_preset("ambient-generator").engine_settings()
    assert settings.mode == "generate" and settings.length_bars == 0


# --- offline: `companion generate generate` ------------------------------------------------------------


class FakeGenerator:
    """Answers every span with one note per beat and records the requests (to check the plan)."""

    name = "fake"

    def __init__(self) -> None:
        self.requests: list[RequestAnswer] = []

    def stream(self, request: RequestAnswer) -> Iterator[Note]:
        self.requests.append(request)
        for start in range(request.start_ticks, request.end_ticks, BEAT):
            yield Note(60 + (start // BEAT) % 12, 80, start, BEAT // 2)


def test_generate_file_plays_the_live_plan_from_tick_zero() -> None:
    fake = FakeGenerator()
    notes = generate_file(bars=5, seed=2, style="folk", settings={"top_p": 0.9}, generator=fake)
    assert [(r.start_ticks, r.end_ticks) for r in fake.requests] == [(0, 2 * BAR), (2 * BAR, 4 * BAR),
                                                                    (4 * BAR, 5 * BAR)]
    assert all(r.settings["style"] == "folk" and r.settings["top_p"] == 0.9 for r in fake.requests)
    assert len(notes) == 20 and max(n.end_ticks for n in notes) <= 5 * BAR


def test_generate_file_refuses_bad_lengths_and_settings() -> None:
    with pytest.raises(UsageError, match="--bars"):
        generate_file(bars=0, seed=0, generator=FakeGenerator())
    with pytest.raises(InputFileError, match="temperature"):
        generate_file(bars=2, seed=0, settings={"temperature": -1}, generator=FakeGenerator())


def test_offline_piece_with_the_markov_fallback_is_a_valid_type_1_file(tmp_path: Path) -> None:
    notes = generate_file(bars=4, seed=1, style="folk", model="markov")
    assert notes and all(0 <= n.start_ticks < 4 * BAR and n.end_ticks <= 4 * BAR for n in notes)
    out = write_generated(tmp_path / "piece.mid", notes, bpm=96.0)
    midi = mido.MidiFile(out)
    assert midi.type == 1 and [t.name for t in midi.tracks] == ["tempo", "companion"]
    tempo = [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"]
    assert tempo == [mido.bpm2tempo(96.0)]
    ons = [m for m in midi.tracks[1] if m.type == "note_on" and m.velocity > 0]
    offs = [m for m in midi.tracks[1] if m.type == "note_off" or (m.type == "note_on" and m.velocity == 0)]
    assert len(ons) == len(notes) == len(offs)


def test_after_a_panic_generate_mode_says_which_key_starts_a_new_piece() -> None:
    engine = Engine(EngineSettings(mode="generate"))
    engine.tick(0)
    assert any(isinstance(c, RequestAnswer) for c in engine.tick(2 * BAR))  # the piece plays
    said = [c.text for c in engine.intent(PanicIntent()) if isinstance(c, Log)]
    assert any("press n" in text and "new piece" in text for text in said), said
