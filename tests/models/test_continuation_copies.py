"""The copy guard: an answer may quote the phrase's 4-note runs, up to a share, in both continuation models."""

from __future__ import annotations

import pytest

from companion.core.events import Note, RequestAnswer
from companion.core.modes.duet import DuetMode
from companion.offline.continuation_eval import _duet
from models.continuation.copies import CopyGuard
from models.continuation.evaluate import copied_ngram_fraction
from models.continuation.metrics import Tune
from models.tokenizer import Tokenizer

PPQ = 480
PHRASE = [60, 62, 64, 65, 67, 65, 64, 62]


def test_runs_are_held_back_only_past_the_share() -> None:
    guard = CopyGuard([PHRASE], share=0.5)
    assert guard.copies([60, 62, 64], 65) and not guard.copies([60, 62, 64], 67)
    assert guard.copied([60, 62, 64, 65, 67, 60]) == 2
    assert guard.held_back([60, 62]) == frozenset()  # no run yet
    assert guard.held_back([60, 62, 64]) == {65}  # the first run would be all copies: 1/1 > 0.5
    assert guard.held_back([67, 60, 62, 64]) == frozenset()  # one run, not copied: a copy now makes 1/2
    assert guard.held_back([60, 62, 64, 65, 67, 65]) == {64}  # 3 of 3 copied: one more is 4/4
    assert CopyGuard([PHRASE], share=1.0).held_back([60, 62, 64]) == frozenset()


def test_copies_are_a_budget_over_the_runs_expected() -> None:
    guard = CopyGuard([PHRASE], share=0.5, expected_notes=12)  # 9 runs expected: 4 copies may come anywhere
    assert guard.held_back([60, 62, 64]) == frozenset()  # the answer may open with the phrase's first run
    assert guard.held_back([60, 62, 64, 65, 67, 65]) == frozenset()  # 3 copied: a 4th makes 4 of 9 runs
    assert guard.held_back([60, 62, 64, 65, 67, 65, 64]) == {62}  # 4 copied: a 5th would be 5 of 9 (> 4.5)
    longer = [60, 62, 64, 65, 67, 65, 64, 62] + [70, 72, 69, 71, 74, 76, 60, 62, 64]  # past the 12 expected
    assert guard.held_back(longer) == frozenset()  # 5 copied of 15 runs: room for a 6th


def test_the_transformer_copies_within_its_share() -> None:
    from models.continuation.model import ContinuationModel
    from tests.models.test_continuation import _tiny_model

    live = ContinuationModel(_tiny_model(), Tokenizer())
    prompt = [(p, 90, i * PPQ // 2, PPQ // 2) for i, p in enumerate(PHRASE * 4)]  # 4 bars of 4/4 eighths

    def share(copy_share: float, seed: int) -> float:
        # a strong style mix: the untrained model plays what the phrase played, in its order
        answer = list(live.stream(prompt, ppq=PPQ, length_ticks=8 * 4 * PPQ, seed=seed, style_mix=1.0,
                                  temperature=0.1, copy_share=copy_share))
        return copied_ngram_fraction(answer, prompt)

    free = [share(1.0, seed) for seed in range(3)]
    guarded = [share(0.3, seed) for seed in range(3)]
    assert max(free) > 0.4  # without the guard it recites (chord tones on top break some runs)
    assert max(guarded) <= 0.3 + 0.1 and sum(guarded) < sum(free)


class RecordingGenerator:
    name = "recording"

    def __init__(self) -> None:
        self.requests: list[RequestAnswer] = []

    def stream(self, request: RequestAnswer) -> list[Note]:
        self.requests.append(request)
        return [Note(60, 80, request.start_ticks, 10)]


@pytest.mark.parametrize("span_bars", [1, 4])
def test_the_duets_figures_come_from_the_duet_as_the_mode_plays_it(monkeypatch: pytest.MonkeyPatch,
                                                                  span_bars: int) -> None:
    bar = 4 * PPQ
    prompt = tuple((60 + i % 8, 90, i * PPQ, PPQ) for i in range(16))
    tune = Tune("music21:ryansMammoth/t.abc#0", "folk", "4/4", (0, "major"), bar, 4 * bar, prompt, prompt)
    monkeypatch.setitem(DuetMode.__init__.__kwdefaults__, "span_bars", span_bars)
    monkeypatch.setitem(DuetMode.__init__.__kwdefaults__, "context_bars", 2)
    generator = RecordingGenerator()
    answer = _duet(generator, tune, {}, seed=1)
    spans = [(r.start_ticks, r.end_ticks) for r in generator.requests]
    assert spans == [(4 * bar + k * span_bars * bar, 4 * bar + (k + 1) * span_bars * bar)
                     for k in range(4 // span_bars)]
    assert all(r.phrase.start_ticks == 2 * bar and r.settings["task"] == "duet" for r in generator.requests)
    assert [n[2] for n in answer] == [k * span_bars * bar for k in range(4 // span_bars)]
