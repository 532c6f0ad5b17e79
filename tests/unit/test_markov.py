"""The Markov responder: deterministic, in key, inside its length, the player's rhythm, not a copy."""

from __future__ import annotations

import random

import pytest

from models.continuation.markov import MarkovResponder

PPQ = 480
C_MAJOR = {0, 2, 4, 5, 7, 9, 11}


def melody(pitches: list[int], step_ticks: int = 240, velocity: int = 90) -> list[tuple[int, int, int, int]]:
    return [(p, velocity, i * step_ticks, step_ticks - 40) for i, p in enumerate(pitches)]


FOLK = melody([60, 62, 64, 65, 67, 65, 64, 62, 64, 65, 67, 69, 67, 65, 64, 60])


def longest_common_run(a: list[int], b: list[int]) -> int:
    best = 0
    for i in range(len(a)):
        for j in range(len(b)):
            k = 0
            while i + k < len(a) and j + k < len(b) and a[i + k] == b[j + k]:
                k += 1
            best = max(best, k)
    return best


def test_deterministic_for_a_seed() -> None:
    first = MarkovResponder().respond(FOLK, 2 * 4 * PPQ, PPQ, C_MAJOR, seed=7, temperature=1.0)
    second = MarkovResponder().respond(FOLK, 2 * 4 * PPQ, PPQ, C_MAJOR, seed=7, temperature=1.0)
    assert first == second and first
    others = {tuple(MarkovResponder().respond(FOLK, 8 * PPQ, PPQ, C_MAJOR, seed=s)) for s in range(8)}
    assert len(others) > 1  # the seed matters


def test_respects_the_key() -> None:
    chromatic = melody([60, 61, 63, 66, 68, 70, 61, 66, 63, 60, 68, 70])
    model = MarkovResponder()
    for seed in range(20):
        answer = model.respond(chromatic, 4 * PPQ * 2, PPQ, C_MAJOR, seed=seed, temperature=1.5)
        assert answer and all(p % 12 in C_MAJOR for p, *_ in answer)


@pytest.mark.parametrize("length_ticks", [1, 100, PPQ, 4 * PPQ + 7, 8 * 4 * PPQ])
def test_no_note_past_the_end(length_ticks: int) -> None:
    model = MarkovResponder()
    long_notes = [(p, v, o, 1500) for p, v, o, _ in FOLK]  # durations far longer than the steps
    for seed in range(10):
        answer = model.respond(long_notes, length_ticks, PPQ, None, seed=seed, temperature=1.2)
        for pitch, velocity, onset, duration in answer:
            assert 0 <= onset < length_ticks and duration >= 1
            assert onset + duration <= length_ticks
            assert 0 <= pitch <= 127 and 1 <= velocity <= 127


def test_no_overlapping_notes_of_one_pitch() -> None:
    answer = MarkovResponder().respond([(p, v, o, 2000) for p, v, o, _ in FOLK], 4 * 4 * PPQ, PPQ, C_MAJOR, 3)
    ends: dict[int, int] = {}
    for pitch, _, onset, duration in sorted(answer, key=lambda n: n[2]):
        assert onset >= ends.get(pitch, 0)
        ends[pitch] = onset + duration


def test_an_answer_not_a_copy() -> None:
    # All pitches distinct: any literal copy is visible; the model copies at most max_copy (4) in a row.
    prompt_pitches = [60, 67, 64, 72, 69, 62, 71, 65, 74, 57, 63, 70]
    prompt = melody(prompt_pitches)
    for seed in range(20):
        answer = MarkovResponder(max_copy=4).respond(prompt, 2 * 4 * PPQ, PPQ, None, seed=seed, temperature=1.0)
        pitches = [p for p, *_ in answer]
        # it may open as the prompt did (a tune's next phrase often does), but not go on reciting it
        assert longest_common_run(pitches, prompt_pitches) <= 4
        assert pitches[:5] != prompt_pitches[:5]


@pytest.mark.parametrize("share", [0.2, 0.45])
def test_copied_runs_stay_within_their_share(share: float) -> None:
    """The template pulls towards the tune's own notes; the copy guard keeps most 4-note runs the answer's own."""
    tune = melody([67, 69, 71, 67, 64, 62, 60, 62, 64, 67, 69, 67, 64, 62, 64, 60] * 2)  # 4 bars of eighths
    shares = []
    for seed in range(10):
        answer = MarkovResponder(copy_share=share).respond(tune, 4 * 4 * PPQ, PPQ, C_MAJOR, seed=seed)
        pitches = [p for p, *_ in answer]
        runs = [tuple(pitches[i : i + 4]) for i in range(len(pitches) - 3)]
        known = {tuple(m[0] for m in tune[i : i + 4]) for i in range(len(tune) - 3)}
        shares.append(sum(r in known for r in runs) / len(runs))
    assert max(shares) <= share + 0.05
    unguarded = MarkovResponder(copy_share=1.0, template_mix=1.0, max_copy=64)
    answer = unguarded.respond(tune, 4 * 4 * PPQ, PPQ, C_MAJOR, seed=0)
    assert [p for p, *_ in answer] == [m[0] for m in tune]  # without the guard, the template is the tune


def test_each_bar_takes_the_rhythm_of_the_phrases_bar() -> None:
    """A jig-like 6/8 call, bars of different rhythm: the answer's bars keep them, in order, the last bar its own."""
    bar = 3 * PPQ
    rhythms = [[0, 240, 480, 720, 960, 1200], [0, 480, 720, 1200], [0, 240, 480, 720, 960, 1200], [0, 720]]
    call = [(60 + (i % 5), 80, b * bar + o, 200) for b, r in enumerate(rhythms) for i, o in enumerate(r)]
    call[-1] = (call[-1][0], 80, call[-1][2], 700)  # the last bar's held note
    answer = MarkovResponder().respond(call, 4 * bar, PPQ, None, seed=3, bar_ticks=bar)
    onsets = sorted({o for _, _, o, _ in answer})
    assert onsets == [b * bar + o for b, r in enumerate(rhythms) for o in r]
    two_bars = MarkovResponder().respond(call, 2 * bar, PPQ, None, seed=3, bar_ticks=bar)
    assert sorted({o for _, _, o, _ in two_bars}) == [0, 240, 480, 720, 960, 1200, bar, bar + 720]


def test_rhythm_and_velocity_come_from_the_player() -> None:
    quarters = [(p, 70 + 10 * (i % 2), i * PPQ, 400) for i, p in enumerate([60, 64, 67, 64, 62, 65, 69, 65])]
    answer = MarkovResponder().respond(quarters, 2 * 4 * PPQ, PPQ, C_MAJOR, seed=1, temperature=0.5)
    onsets = [o for _, _, o, _ in answer]
    assert onsets == [i * PPQ for i in range(len(onsets))]  # the player's quarter-note pulse, on the grid
    assert all(d == 400 for *_, d in answer)
    assert {v for _, v, _, _ in answer} <= set(range(60, 91))


def test_swing_feel_is_kept_lightly() -> None:
    swung = [
        (p, 80, i * 240 + (40 if i % 2 else 0), 150) for i, p in enumerate([60, 62, 64, 62, 60, 64, 67, 64])
    ]
    answer = MarkovResponder().respond(swung, 4 * PPQ, PPQ, None, seed=2, temperature=0.5)
    offbeats = [o % PPQ for _, _, o, _ in answer if o % PPQ != 0]
    # A late eighth (280) reads as swing: the answer's offbeats all sit at one place, near the player's.
    assert len(offbeats) >= 2 and len(set(offbeats)) == 1
    assert 270 <= offbeats[0] <= 300
    assert all(o % PPQ in (0, offbeats[0]) for _, _, o, _ in answer)


def test_chords_come_back_as_chords() -> None:
    chords = []
    for i, root in enumerate([60, 65, 67, 60, 65, 67]):
        for interval in (0, 4, 7):
            chords.append((root + interval, 80, i * PPQ + interval, 400))  # a slightly rolled chord
    answer = MarkovResponder().respond(chords, 4 * PPQ, PPQ, C_MAJOR, seed=0)
    by_onset: dict[int, int] = {}
    for _, _, onset, _ in answer:
        by_onset[onset] = by_onset.get(onset, 0) + 1
    assert by_onset and all(count == 3 for count in by_onset.values())


def test_learns_across_the_session_with_bounded_memory() -> None:
    model = MarkovResponder(max_phrases=8)
    model.learn(FOLK)
    model.respond(FOLK, PPQ, PPQ)  # the phrase learned last is not learned twice
    assert model.phrase_count == 1
    rng = random.Random(0)
    for _ in range(30):
        model.learn(melody([rng.randrange(55, 80) for _ in range(12)]))
    assert model.phrase_count == 8
    assert model.respond([], 4 * PPQ, PPQ, None, seed=1)  # no prompt: still answers from memory


def test_empty_everything() -> None:
    assert MarkovResponder().respond([], 4 * PPQ, PPQ) == []
    assert MarkovResponder().respond(FOLK, 0, PPQ) == []


def test_bad_notes_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="pitch, velocity, onset_ticks, duration_ticks"):
        MarkovResponder().learn([(60, 90, 0)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_order"):
        MarkovResponder(max_order=0)


def test_nll_prefers_what_it_heard() -> None:
    model = MarkovResponder()
    for _ in range(3):
        model.learn(FOLK)
    rng = random.Random(1)
    noise = melody([rng.randrange(40, 90) for _ in range(16)])
    assert model.nll(FOLK) < model.nll(noise)
    assert model.nll([]) == 0.0


def test_regenerating_with_the_same_seed_gives_the_same_answer() -> None:
    model = MarkovResponder()
    model.learn(FOLK)
    first = model.respond(FOLK, 8 * PPQ, PPQ, C_MAJOR, seed=4)
    model.learn(FOLK)  # a bridge that learns before every respond must not change the next answer
    assert model.phrase_count == 1
    assert model.respond(FOLK, 8 * PPQ, PPQ, C_MAJOR, seed=4) == first


@pytest.mark.parametrize("bars", [2, 4, 16])
@pytest.mark.parametrize("call", [FOLK, melody([60, 64, 67, 72, 67, 64], step_ticks=PPQ), melody([62, 66, 69])])
def test_an_answer_fills_its_bars_at_the_calls_pace(bars: int, call: list[tuple[int, int, int, int]]) -> None:
    """Not a call's worth of notes and silence: the answer sounds to its last bar, as busy as the call."""
    bar, length_ticks = 4 * PPQ, bars * 4 * PPQ
    call_steps = {b[2] - a[2] for a, b in zip(call, call[1:], strict=False)}
    for seed in range(6):
        answer = MarkovResponder().respond(call, length_ticks, PPQ, C_MAJOR, seed=seed)
        ends = [o + d for _, _, o, d in answer]
        assert length_ticks - bar < max(ends) <= length_ticks  # the last note ends in the last bar
        onsets = sorted({o for _, _, o, _ in answer})
        assert all(b - a <= bar for a, b in zip(onsets, onsets[1:], strict=False))  # a rest, never a gap
        assert {b - a for a, b in zip(onsets, onsets[1:], strict=False)} <= call_steps  # the call's steps: no cramming


def test_an_answer_in_three_four_fills_its_last_bar() -> None:
    waltz = melody([60, 64, 67, 64, 62, 65], step_ticks=PPQ)
    for seed in range(6):
        answer = MarkovResponder().respond(waltz, 2 * 3 * PPQ, PPQ, C_MAJOR, seed=seed, bar_ticks=3 * PPQ)
        assert 3 * PPQ < max(o + d for _, _, o, d in answer) <= 6 * PPQ


def test_the_answer_begins_on_its_start_even_when_the_call_came_late() -> None:
    """A call heard a 16th and a bit after its bar line (a late player, a clock not yet locked): the rhythm keeps
    the call's feel, but the answer's first note is on the answer's beat, as planned."""
    late = [(p, v, o + 170, d) for p, v, o, d in FOLK]
    for seed in range(4):
        answer = MarkovResponder().respond(late, 2 * 4 * PPQ, PPQ, C_MAJOR, seed=seed)
        onsets = sorted({o for _, _, o, _ in answer})
        assert onsets[0] == 0 and onsets[1] == 240 + 170
