"""Harmonize mode, tick by tick: quantization to the 16th grid, held notes, change grid, release, stop, steering."""

from __future__ import annotations

import itertools

import pytest

from companion.core.engine import ChangeSettings, Engine, EngineSettings, PanicIntent, SetMode
from companion.core.events import (
    CC_SUSTAIN,
    PPQ,
    Cancel,
    ClockStop,
    Command,
    ControlChange,
    HarmonizeNote,
    HarmonyStep,
    NoteOff,
    NoteOn,
    Panic,
    ReleaseHarmony,
    StopHarmony,
)
from companion.core.modes.base import ModeContext
from companion.core.modes.harmonize import HARMONY_TAG, HarmonizeMode, RevoiceNote, SteerHarmony
from companion.core.theory import Key

STEP = PPQ // 4
BAR = 4 * PPQ


def context(estimate: Key | None = None, **changes: object) -> ModeContext:
    """The mode's context: `estimate` is the engine's key estimate; `changes` set EngineSettings (`key` too)."""
    settings = EngineSettings(mode="harmonize", **changes)  # type: ignore[arg-type]
    counter = itertools.count(1)
    return ModeContext(settings, estimate, settings.beat_ticks, settings.bar_ticks, lambda: next(counter))


def on(mode: HarmonizeMode, ctx: ModeContext, pitch: int, ticks: int, channel: int = 0) -> list[Command]:
    return mode.handle(NoteOn(channel, pitch, 100), ticks, ctx, True)


def off(mode: HarmonizeMode, ctx: ModeContext, pitch: int, ticks: int, channel: int = 0) -> list[Command]:
    return mode.handle(NoteOff(channel, pitch), ticks, ctx, False)


def steps(commands: list[Command]) -> list[HarmonyStep]:
    return [c for c in commands if isinstance(c, HarmonyStep)]


def run_ticks(mode: HarmonizeMode, ctx: ModeContext, start: int, end: int, every: int = 7) -> list[Command]:
    """Tick the mode as the engine thread would, every few ticks from `start` to `end` inclusive."""
    commands: list[Command] = []
    for ticks in range(start, end + 1, every):
        commands += mode.tick(ticks, ctx)
    return commands + mode.tick(end, ctx)


def test_a_note_is_voiced_at_once_on_its_quantized_step() -> None:
    mode, ctx = HarmonizeMode(), context()
    [note] = on(mode, ctx, 67, 2 * PPQ - 40)  # 40 ticks early for beat 3: step 8
    assert isinstance(note, HarmonizeNote)
    assert (note.pitch, note.velocity, note.now_ticks, note.step_index, note.may_change) == (67, 100, 2 * PPQ - 40,
                                                                                           8, True)
    assert note.settings is ctx.settings


@pytest.mark.parametrize(("ticks", "step"), [(0, 0), (59, 0), (60, 1), (179, 1), (181, 2)])
def test_quantization_window_is_half_a_16th_each_side(ticks: int, step: int) -> None:
    [note] = on(HarmonizeMode(), context(), 60, ticks)
    assert note.step_index == step  # type: ignore[union-attr]


def test_held_note_advances_the_model_once_per_16th_after_each_window_closes() -> None:
    mode, ctx = HarmonizeMode(), context()
    on(mode, ctx, 72, 0)
    assert mode.tick(STEP + 59, ctx) == []  # step 1's window is still open: a late note could claim it
    [first] = steps(mode.tick(STEP + 60, ctx))
    assert (first.step_index, first.soprano, first.holding, first.may_change) == (1, 72, True, False)
    later = steps(run_ticks(mode, ctx, STEP + 61, 4 * PPQ + 60))
    assert [s.step_index for s in later] == list(range(2, 17))
    assert [s.step_index for s in later if s.may_change] == [4, 8, 12, 16]  # the beats: the chord may move there
    assert all(s.holding and s.soprano == 72 for s in later)


@pytest.mark.parametrize(("every", "changes"), [("beat", [4, 8, 12, 16, 20, 24, 28, 32]), ("half_bar", [8, 16, 24, 32]),
                                                 ("bar", [16, 32])])
def test_chord_changes_follow_change_every(every: str, changes: list[int]) -> None:
    mode, ctx = HarmonizeMode(), context(change_every=every)
    on(mode, ctx, 72, 0)
    all_steps = steps(run_ticks(mode, ctx, 1, 2 * BAR + 60))
    assert [s.step_index for s in all_steps if s.may_change] == changes
    # a new note off the grid of changes may not change the chord (unless it clashes: the worker decides)
    [note] = [c for c in on(mode, ctx, 74, 2 * BAR + PPQ // 2) if isinstance(c, HarmonizeNote)]
    assert note.may_change is False


def test_release_then_rest_keeps_the_model_on_the_last_pitch_then_ends_the_piece() -> None:
    mode, ctx = HarmonizeMode(), context()
    on(mode, ctx, 64, 0)
    assert off(mode, ctx, 64, PPQ - 10) == [ReleaseHarmony(64, PPQ - 10)]
    commands = run_ticks(mode, ctx, PPQ, 3 * BAR)
    rests = steps(commands)
    assert rests and all(s.soprano == 64 and not s.holding for s in rests)
    assert len(rests) == BAR // STEP  # a bar of rest, then the piece ends
    [stop] = [c for c in commands if isinstance(c, StopHarmony)]
    window_closed = (rests[-1].step_index + 1) * STEP + STEP // 2  # the 17th rest step
    assert stop.reason == "rest" and window_closed <= stop.now_ticks < window_closed + 7
    assert steps(run_ticks(mode, ctx, 3 * BAR, 4 * BAR)) == []
    [note] = on(mode, ctx, 65, 4 * BAR + 3 * STEP)
    assert note.step_index == 4 * BAR // STEP + 3 and note.may_change  # type: ignore[union-attr]


def test_a_note_before_a_late_tick_gets_the_missed_steps_first() -> None:
    mode, ctx = HarmonizeMode(), context()
    on(mode, ctx, 60, 0)
    commands = on(mode, ctx, 62, PPQ)  # no tick ran in between
    assert [type(c).__name__ for c in commands] == ["HarmonyStep"] * 3 + ["HarmonizeNote"]
    assert [c.step_index for c in commands] == [1, 2, 3, 4]  # type: ignore[union-attr]


def test_legato_note_takes_over_and_the_old_note_off_releases_nothing() -> None:
    mode, ctx = HarmonizeMode(), context()
    on(mode, ctx, 60, 0)
    [note] = [c for c in on(mode, ctx, 62, PPQ) if isinstance(c, HarmonizeNote)]
    assert off(mode, ctx, 60, PPQ + 20) == []
    assert off(mode, ctx, 62, 2 * PPQ) == [ReleaseHarmony(62, 2 * PPQ)]
    assert note.pitch == 62


def test_chord_played_in_the_right_hand_the_top_note_is_the_melody() -> None:
    mode, ctx = HarmonizeMode(), context()
    on(mode, ctx, 67, 0)
    assert on(mode, ctx, 64, 10) == []  # under the melody, inside a 32nd: the player's own chord tone
    [higher] = on(mode, ctx, 72, 20)  # above it: the melody is the top note; the model hears it a step later
    assert isinstance(higher, HarmonizeNote) and higher.step_index == 1
    [ornament] = on(mode, ctx, 74, 40)
    assert isinstance(ornament, HarmonizeNote) and ornament.step_index is None and mode.ornaments == 1
    assert off(mode, ctx, 64, 100) == [] and off(mode, ctx, 67, 100) == []


def test_sustain_pedal_holds_the_harmony_until_it_lifts() -> None:
    mode, ctx = HarmonizeMode(), context()
    mode.handle(ControlChange(0, CC_SUSTAIN, 127), 0, ctx, False)
    on(mode, ctx, 60, 0)
    assert off(mode, ctx, 60, 200) == []
    assert all(s.holding for s in steps(run_ticks(mode, ctx, 201, PPQ)))
    assert mode.handle(ControlChange(0, CC_SUSTAIN, 0), PPQ + 1, ctx, False) == [ReleaseHarmony(60, PPQ + 1)]


def test_left_hand_chord_channel_steers_at_once_and_is_never_melody() -> None:
    mode, ctx = HarmonizeMode(), context(chord_channel=1)
    steered = on(mode, ctx, 50, 0, channel=1) + on(mode, ctx, 53, 0, channel=1) + on(mode, ctx, 57, 0, channel=1)
    # each change reaches the worker at once (it rebuilds its chords before the melody note comes)
    assert all(isinstance(c, SteerHarmony) for c in steered)
    assert [c.chord_pcs for c in steered] == [{2}, {2, 5}, {2, 5, 9}]  # type: ignore[union-attr]
    assert on(mode, ctx, 62, 2, channel=1) == []  # an octave doubling changes nothing: nothing to send
    [note] = on(mode, ctx, 69, 5)
    assert note.chord_pcs == frozenset({2, 5, 9})  # type: ignore[union-attr]
    off(mode, ctx, 50, 10, channel=1), off(mode, ctx, 53, 10, channel=1), off(mode, ctx, 57, 10, channel=1)
    assert off(mode, ctx, 62, 10, channel=1)[0].chord_pcs is None  # type: ignore[union-attr]
    assert all(s.chord_pcs is None for s in steps(mode.tick(PPQ, ctx)))


def test_a_new_key_estimate_is_sent_once_between_notes() -> None:
    mode, ctx = HarmonizeMode(), context(Key(0, "major"))
    assert mode.tick(0, ctx) == [SteerHarmony(0, -1, False, False, Key(0, "major").scale_pitch_classes, None,
                                              ctx.settings)]  # between pieces: primed models take it
    assert mode.tick(5, ctx) == []
    on(mode, ctx, 72, 10)
    off(mode, ctx, 72, 20)
    moved = context(Key(7, "major"))
    [steer] = mode.tick(30, moved)  # no step is due yet: the key comes on its own
    assert isinstance(steer, SteerHarmony) and steer.key_pcs == Key(7, "major").scale_pitch_classes
    assert (steer.step_index, steer.soprano, steer.holding) == (0, 72, False)
    assert mode.tick(40, moved) == []


def test_key_lock_from_the_estimate_a_preset_key_or_off() -> None:
    estimated = Key(2, "minor")
    [note] = on(HarmonizeMode(), context(estimated), 62, 0)
    assert note.key_pcs == estimated.scale_pitch_classes  # type: ignore[union-attr]
    [note] = on(HarmonizeMode(), context(estimated, key="Bb major"), 62, 0)
    assert note.key_pcs == Key(10, "major").scale_pitch_classes  # type: ignore[union-attr]
    [note] = on(HarmonizeMode(), context(estimated, key_lock=False), 62, 0)
    assert note.key_pcs is None  # type: ignore[union-attr]
    [note] = on(HarmonizeMode(), context(None), 62, 0)
    assert note.key_pcs is None  # type: ignore[union-attr]


def test_cancel_stops_the_harmony_and_the_next_note_starts_a_new_piece() -> None:
    mode, ctx = HarmonizeMode(), context()
    assert mode.cancel(0) == []  # nothing in flight: nothing to stop
    on(mode, ctx, 60, 0)
    assert mode.cancel(100) == [StopHarmony(100, "stop"), Cancel(HARMONY_TAG, 100, "stop")]
    assert mode.tick(BAR, ctx) == [] and off(mode, ctx, 60, BAR) == []
    [note] = on(mode, ctx, 62, BAR + STEP)
    assert note.step_index == BAR // STEP + 1 and mode.pieces == 2  # type: ignore[union-attr]


def test_a_stalled_engine_restarts_the_piece_instead_of_flooding_the_worker() -> None:
    mode, ctx = HarmonizeMode(), context()
    on(mode, ctx, 60, 0)
    assert mode.tick(3 * BAR, ctx) == [StopHarmony(3 * BAR, "the engine fell behind the clock")]


def test_through_the_engine_stop_panic_and_mode_change_silence_the_harmony() -> None:
    engine = Engine(EngineSettings(mode="harmonize"))
    [note] = engine.handle(NoteOn(0, 67, 90), 0)
    assert isinstance(note, HarmonizeNote) and note.step_index == 0
    assert StopHarmony(10, "stop") in engine.handle(ClockStop(), 10)
    engine.handle(NoteOn(0, 67, 90), 20)
    commands = engine.intent(PanicIntent())
    assert any(isinstance(c, StopHarmony) for c in commands) and any(isinstance(c, Panic) for c in commands)
    engine.handle(NoteOn(0, 69, 90), 30)
    commands = engine.intent(ChangeSettings({"harmony_style": "pad"}))
    assert any(isinstance(c, StopHarmony) for c in commands)
    engine.handle(NoteOn(0, 71, 90), 40)
    assert any(isinstance(c, StopHarmony) for c in engine.intent(SetMode("call_response")))


@pytest.mark.parametrize(("changes", "field"), [
    ({"harmony_style": "jazz"}, "harmony_style"), ({"change_every": "2 beats"}, "change_every"),
    ({"harmony_channels": (1, 2)}, "harmony_channels"), ({"harmony_channels": (1, 2, 16)}, "harmony_channels"),
    ({"pad_low_note": 120}, "pad_low_note"), ({"chord_channel": 17}, "chord_channel"),
    ({"chord_channel": 1, "input_channel": 0}, "chord_channel"), ({"key": "H major"}, "key"),
])
def test_harmony_settings_are_validated_with_the_field_named(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EngineSettings(mode="harmonize", **changes)


def test_harmony_channels_from_a_toml_list_become_a_tuple() -> None:
    assert EngineSettings(harmony_channels=[1, 2, 3]).harmony_channels == (1, 2, 3)  # type: ignore[arg-type]


def test_between_change_lines_the_first_note_after_a_line_may_change_the_rest_may_not() -> None:
    mode, ctx = HarmonizeMode(), context(change_every="bar")
    flags = []
    for ticks in (0, PPQ, 2 * PPQ, BAR + 2 * PPQ, BAR + 3 * PPQ):  # detached quarter notes; none on bar 2's line
        [note] = [c for c in on(mode, ctx, 72, ticks) + off(mode, ctx, 72, ticks + PPQ - 40)
                  if isinstance(c, HarmonizeNote)]
        flags.append(note.may_change)
        run_ticks(mode, ctx, ticks + PPQ - 40, ticks + PPQ - 1)
    assert flags == [True, False, False, True, False]


def test_a_clock_that_moved_back_starts_a_new_piece_where_the_note_is() -> None:
    mode, ctx = HarmonizeMode(), context()
    on(mode, ctx, 60, 8 * BAR)
    off(mode, ctx, 60, 8 * BAR + 100)
    commands = on(mode, ctx, 62, BAR)  # the DAW jumped back to bar 2
    assert isinstance(commands[0], StopHarmony) and commands[0].reason == "the clock moved back"
    assert commands[-1].step_index == BAR // STEP and commands[-1].may_change  # type: ignore[union-attr]


def test_a_left_hand_chord_just_after_the_melody_note_re_voices_it() -> None:
    mode, ctx = HarmonizeMode(), context(chord_channel=1)
    [note] = on(mode, ctx, 72, PPQ)  # on the beat: it may change the chord
    [first] = on(mode, ctx, 48, PPQ + 10, channel=1)  # the left hand, 10 ticks late
    assert isinstance(first, RevoiceNote) and first.chord_pcs == {0}
    assert (first.pitch, first.velocity, first.channel, first.step_index, first.now_ticks) == (72, 100, 0, 4, PPQ + 10)
    [second] = on(mode, ctx, 52, PPQ + 12, channel=1) + on(mode, ctx, 52, PPQ + 12, channel=1)  # once
    assert isinstance(second, RevoiceNote) and second.chord_pcs == {0, 4}
    [let_go] = off(mode, ctx, 48, PPQ + 20, channel=1)
    assert isinstance(let_go, RevoiceNote) and let_go.chord_pcs == {4}  # the chord held is what counts
    [steer] = off(mode, ctx, 52, PPQ + 30, channel=1)
    assert isinstance(steer, SteerHarmony)  # letting go of it all re-voices nothing: the harmony played stays
    assert isinstance(note, HarmonizeNote) and note.step_index == 4


@pytest.mark.parametrize(("melody_ticks", "chord_ticks"), [
    (PPQ, PPQ + STEP + 1),  # more than a 16th later: a change of chord for the next note
    (PPQ + STEP, PPQ + STEP + 10),  # the note was between change lines: it could not change the chord
])
def test_a_late_chord_outside_the_window_only_steers(melody_ticks: int, chord_ticks: int) -> None:
    mode, ctx = HarmonizeMode(), context(chord_channel=1)
    on(mode, ctx, 72, 0)
    run_ticks(mode, ctx, 1, melody_ticks - 1)
    on(mode, ctx, 74, melody_ticks)
    commands = [c for c in run_ticks(mode, ctx, melody_ticks + 1, chord_ticks - 1) if not isinstance(c, HarmonyStep)]
    assert commands == []
    [steer] = on(mode, ctx, 50, chord_ticks, channel=1)
    assert isinstance(steer, SteerHarmony) and steer.chord_pcs == {2}
