"""Phrase capture driven tick by tick: endings, pedal, channel filter, triggers, exact offsets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from companion.core.capture import CaptureSettings, PhraseCapture
from companion.core.events import (
    CC_SUSTAIN,
    PPQ,
    ControlChange,
    Note,
    NoteOff,
    NoteOn,
    Phrase,
    PitchBend,
    ProgramChange,
)

BAR = 4 * PPQ


def play(capture: PhraseCapture, events: list[tuple[int, object]]) -> list[Phrase]:
    """Feed (tick, message) pairs, polling every 10 ticks in between like the engine thread does."""
    phrases: list[Phrase] = []
    last = events[0][0] if events else 0
    for tick, message in events:
        for now in range(last, tick, 10):
            if (p := capture.poll(now)) is not None:
                phrases.append(p)
        if (p := capture.feed(message, tick)) is not None:  # type: ignore[arg-type]
            phrases.append(p)
        last = tick
    return phrases


def poll_until(capture: PhraseCapture, start: int, stop: int, step: int = 10) -> tuple[int, Phrase] | None:
    for now in range(start, stop, step):
        if (p := capture.poll(now)) is not None:
            return now, p
    return None


def test_exact_offsets_kept_and_phrase_starts_on_the_bar_line() -> None:
    capture = PhraseCapture(CaptureSettings(silence_beats=2.0))
    events = [
        (BAR + 13, NoteOn(0, 60, 100)),
        (BAR + 400, NoteOff(0, 60)),
        (BAR + 487, NoteOn(0, 62, 90)),
        (BAR + 953, NoteOff(0, 62, 64)),
    ]
    assert play(capture, events) == []
    assert capture.in_progress
    found = poll_until(capture, BAR + 960, BAR + 4000)
    assert found is not None
    now, phrase = found
    assert phrase.notes == (Note(60, 100, BAR + 13, 387, 0), Note(62, 90, BAR + 487, 466, 0))
    assert phrase.start_ticks == BAR  # bar line at or before the first note
    assert phrase.end_ticks == BAR + 953 + 2 * PPQ  # exactly silence_beats after the last release
    assert phrase.end_ticks <= now < phrase.end_ticks + 10  # found by the first poll after the deadline
    assert phrase.bar_ticks == BAR
    assert not capture.in_progress


def test_velocity_zero_note_on_is_a_note_off() -> None:
    capture = PhraseCapture()
    play(capture, [(0, NoteOn(0, 60, 80)), (240, NoteOn(0, 60, 0))])
    found = poll_until(capture, 240, 3000)
    assert found is not None
    assert found[1].notes == (Note(60, 80, 0, 240, 0),)
    assert capture.ignored == 0


def test_silence_not_before_its_time() -> None:
    capture = PhraseCapture(CaptureSettings(silence_beats=1.0))
    play(capture, [(0, NoteOn(0, 60, 80)), (100, NoteOff(0, 60))])
    assert capture.poll(100 + PPQ - 1) is None
    phrase = capture.poll(100 + PPQ)
    assert phrase is not None and phrase.end_ticks == 100 + PPQ


def test_held_key_keeps_the_phrase_open() -> None:
    capture = PhraseCapture(CaptureSettings(silence_beats=1.0))
    capture.feed(NoteOn(0, 60, 80), 0)
    assert poll_until(capture, 0, 10 * PPQ) is None
    assert capture.player_active
    capture.feed(NoteOff(0, 60), 10 * PPQ)
    found = poll_until(capture, 10 * PPQ, 12 * PPQ)
    assert found is not None and found[1].notes[0].duration_ticks == 10 * PPQ


def test_sustain_pedal_extends_notes_until_pedal_up() -> None:
    capture = PhraseCapture(CaptureSettings(silence_beats=1.0))
    events = [
        (0, ControlChange(0, CC_SUSTAIN, 127)),
        (10, NoteOn(0, 60, 70)),
        (200, NoteOff(0, 60)),
        (480, NoteOn(0, 64, 70)),
        (600, NoteOff(0, 64)),
    ]
    play(capture, events)
    # Keys up, pedal down: still sounding, not silent.
    assert capture.player_active
    assert poll_until(capture, 600, 1500) is None
    capture.feed(ControlChange(0, CC_SUSTAIN, 0), 1500)
    found = poll_until(capture, 1500, 4000)
    assert found is not None
    assert found[1].notes == (Note(60, 70, 10, 1490, 0), Note(64, 70, 480, 1020, 0))
    assert found[1].end_ticks == 1500 + PPQ


def test_pedal_down_without_notes_holds_the_silence() -> None:
    capture = PhraseCapture(CaptureSettings(silence_beats=1.0))
    play(capture, [(0, NoteOn(0, 60, 70)), (100, NoteOff(0, 60)), (200, ControlChange(0, CC_SUSTAIN, 100))])
    assert poll_until(capture, 200, 3000) is None
    capture.feed(ControlChange(0, CC_SUSTAIN, 0), 3000)
    found = poll_until(capture, 3000, 5000)
    assert found is not None and found[1].end_ticks == 3000 + PPQ


def test_restruck_key_under_the_pedal_ends_the_old_note() -> None:
    capture = PhraseCapture(CaptureSettings(silence_beats=1.0))
    play(
        capture,
        [
            (0, ControlChange(0, CC_SUSTAIN, 127)),
            (0, NoteOn(0, 60, 70)),
            (100, NoteOff(0, 60)),
            (300, NoteOn(0, 60, 90)),
            (400, NoteOff(0, 60)),
            (500, ControlChange(0, CC_SUSTAIN, 0)),
        ],
    )
    found = poll_until(capture, 500, 2000)
    assert found is not None
    assert found[1].notes == (Note(60, 70, 0, 300, 0), Note(60, 90, 300, 200, 0))


def test_channel_filter() -> None:
    capture = PhraseCapture(CaptureSettings(input_channel=2, silence_beats=1.0))
    play(
        capture,
        [
            (0, NoteOn(0, 50, 80)),
            (0, NoteOn(2, 60, 80)),
            (100, NoteOff(2, 60)),
            (120, NoteOff(0, 50)),
        ],
    )
    assert capture.filtered == 2
    found = poll_until(capture, 120, 2000)
    assert found is not None and [n.pitch for n in found[1].notes] == [60]
    assert found[1].notes[0].channel == 2


def test_omni_keeps_each_notes_channel() -> None:
    capture = PhraseCapture(CaptureSettings(silence_beats=1.0))
    play(
        capture, [(0, NoteOn(3, 60, 80)), (0, NoteOn(5, 64, 80)), (50, NoteOff(3, 60)), (60, NoteOff(5, 64))]
    )
    found = poll_until(capture, 60, 2000)
    assert found is not None and [(n.channel, n.pitch) for n in found[1].notes] == [(3, 60), (5, 64)]


def test_max_bars_cuts_held_notes_at_the_bar() -> None:
    capture = PhraseCapture(CaptureSettings(max_bars=2, silence_beats=4.0))
    play(capture, [(PPQ, NoteOn(0, 60, 80)), (PPQ + 100, NoteOn(0, 64, 80)), (3 * PPQ, NoteOff(0, 64))])
    assert capture.poll(2 * BAR - 1) is None
    phrase = capture.poll(2 * BAR + 5)
    assert phrase is not None
    assert phrase.start_ticks == 0 and phrase.end_ticks == 2 * BAR
    assert phrase.notes[0] == Note(60, 80, PPQ, 2 * BAR - PPQ, 0)  # cut at the phrase end
    # The held key's note-off later is absorbed, not counted as a stray.
    capture.feed(NoteOff(0, 60), 2 * BAR + 300)
    assert capture.ignored == 0
    assert not capture.in_progress


def test_note_after_a_missed_poll_starts_a_new_phrase() -> None:
    capture = PhraseCapture(CaptureSettings(silence_beats=1.0))
    capture.feed(NoteOn(0, 60, 80), 0)
    capture.feed(NoteOff(0, 60), 100)
    phrase = capture.feed(NoteOn(0, 62, 80), 5000)  # no poll in between
    assert phrase is not None and phrase.end_ticks == 100 + PPQ and len(phrase.notes) == 1
    assert capture.in_progress


def test_trigger_cc_ends_the_phrase_at_once() -> None:
    capture = PhraseCapture(CaptureSettings(trigger_cc=80, silence_beats=8.0))
    play(capture, [(0, NoteOn(0, 60, 80)), (200, NoteOff(0, 60)), (300, NoteOn(0, 62, 80))])
    assert capture.feed(ControlChange(0, 80, 10), 400) is None  # below 64: not a press
    phrase = capture.feed(ControlChange(0, 80, 127), 500)
    assert phrase is not None and phrase.end_ticks == 500
    assert [n.pitch for n in phrase.notes] == [60, 62]
    assert phrase.notes[1].duration_ticks == 200  # still held: cut at the trigger
    assert capture.feed(ControlChange(0, 80, 127), 600) is None  # nothing in progress


def test_trigger_note_ends_the_phrase_and_is_not_captured() -> None:
    capture = PhraseCapture(CaptureSettings(trigger_note=36, silence_beats=8.0))
    play(capture, [(0, NoteOn(0, 60, 80)), (200, NoteOff(0, 60))])
    phrase = capture.feed(NoteOn(0, 36, 100), 700)
    assert phrase is not None and phrase.end_ticks == 700
    assert [n.pitch for n in phrase.notes] == [60]
    capture.feed(NoteOff(0, 36), 800)
    assert capture.ignored == 0 and not capture.in_progress


def test_stray_note_offs_are_ignored_and_counted() -> None:
    capture = PhraseCapture()
    assert capture.feed(NoteOff(0, 60), 0) is None
    capture.feed(NoteOn(0, 61, 80), 10)
    capture.feed(NoteOff(0, 61), 20)
    capture.feed(NoteOff(0, 61), 30)
    assert capture.ignored == 2


def test_other_messages_do_not_crash_or_count() -> None:
    capture = PhraseCapture()
    assert capture.feed(ProgramChange(0, 5), 0) is None
    assert capture.feed(PitchBend(0, 100), 0) is None
    assert capture.ignored == 0 and not capture.in_progress


def test_player_active_within_a_beat_of_a_note() -> None:
    capture = PhraseCapture(CaptureSettings(silence_beats=4.0))
    capture.feed(NoteOn(0, 60, 80), 0)
    capture.feed(NoteOff(0, 60), 10)
    capture.poll(PPQ - 1)
    assert capture.player_active
    capture.poll(PPQ)
    assert not capture.player_active


def test_reset_drops_the_phrase_and_absorbs_held_keys() -> None:
    capture = PhraseCapture(CaptureSettings(silence_beats=1.0))
    capture.feed(NoteOn(0, 60, 80), 0)
    capture.reset()
    assert not capture.in_progress
    capture.feed(NoteOff(0, 60), 100)
    assert capture.ignored == 0
    assert poll_until(capture, 100, 3000) is None


messages = st.lists(
    st.tuples(
        st.integers(0, 40),  # ticks since the previous message
        st.one_of(
            st.builds(NoteOn, st.integers(0, 2), st.integers(58, 64), st.integers(0, 127)),
            st.builds(NoteOff, st.integers(0, 2), st.integers(58, 64)),
            st.builds(ControlChange, st.integers(0, 2), st.just(CC_SUSTAIN), st.sampled_from([0, 127])),
        ),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(messages, st.sampled_from([None, 1]), st.sampled_from([None, 1, 2]))
def test_property_every_note_closed_and_inside_its_phrase(
    stream: list[tuple[int, object]], max_bars: int | None, input_channel: int | None
) -> None:
    capture = PhraseCapture(
        CaptureSettings(silence_beats=1.0, max_bars=max_bars, input_channel=input_channel)
    )
    phrases: list[Phrase] = []
    now = 0
    for delta, message in stream:
        now += delta
        if (p := capture.feed(message, now)) is not None:  # type: ignore[arg-type]
            phrases.append(p)
    # The player lets go of everything: every key up, pedals up, then silence.
    now += 1
    for channel in range(3):
        for pitch in range(58, 65):
            if (p := capture.feed(NoteOff(channel, pitch), now)) is not None:
                phrases.append(p)
        if (p := capture.feed(ControlChange(channel, CC_SUSTAIN, 0), now)) is not None:
            phrases.append(p)
    if (p := capture.poll(now + 10 * BAR)) is not None:
        phrases.append(p)
    assert not capture.in_progress
    capture.poll(now + 20 * BAR)
    assert not capture.player_active
    for phrase in phrases:
        assert phrase.notes, "a phrase always has notes"
        assert phrase.start_ticks % BAR == 0 and phrase.start_ticks <= phrase.notes[0].start_ticks
        for note in phrase.notes:
            assert note.duration_ticks >= 1
            assert phrase.start_ticks <= note.start_ticks < phrase.end_ticks
            assert note.end_ticks <= phrase.end_ticks
            assert input_channel is None or note.channel == input_channel
        if max_bars is not None:
            assert phrase.end_ticks <= phrase.start_ticks + max_bars * BAR
