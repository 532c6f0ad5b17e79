"""The phrase's bars as the shape of the Transformer's answer (``models.continuation.prompt_style.BarTemplates``)."""

from __future__ import annotations

from models.continuation.prompt_style import BarTemplates
from models.tokenizer import GridNote, Tokenizer

BAR = 48  # grid steps in a 4/4 bar (12 a quarter)


def _bars(pitches_per_bar: list[list[int]], step: int = 12) -> list[GridNote]:
    return [GridNote(b * BAR + i * step, step, p, 90)
            for b, bar in enumerate(pitches_per_bar) for i, p in enumerate(bar)]


def test_answer_bars_follow_the_phrase_bars_in_order_and_the_last_takes_the_last() -> None:
    phrase = _bars([[60, 62, 64, 65], [67, 65, 64, 62], [60, 64, 67, 72], [71, 67, 62, 60]])
    t = BarTemplates(phrase, BAR, answer_bar=4, bars=4)
    assert t.bar(4) == {0: (60, 12), 12: (62, 12), 24: (64, 12), 36: (65, 12)}
    assert t.bar(5)[0] == (67, 12) and t.bar(6)[0] == (60, 12)
    assert t.bar(7) == {0: (71, 12), 12: (67, 12), 24: (62, 12), 36: (60, 12)}  # the cadence where the tune's is
    assert t.bar(8) == {} and t.bar(3) == {}


def test_templates_cycle_take_the_top_voice_and_skip_a_pickup() -> None:
    pickup = [GridNote(40, 8, 55, 90)]  # only the last 8 steps of bar 0
    chord = [GridNote(BAR, 24, 48, 90), GridNote(BAR, 24, 64, 90), GridNote(BAR + 24, 24, 62, 90)]
    t = BarTemplates(pickup + chord, BAR, answer_bar=2, bars=3)
    assert t.bar(2) == {0: (64, 24), 24: (62, 24)}  # bar 1 only: the pickup bar lends nothing
    assert t.bar(3) == t.bar(2) == t.bar(4)


def test_no_whole_bar_means_no_template() -> None:
    t = BarTemplates([GridNote(0, 6, 60, 90), GridNote(6, 6, 62, 90)], BAR, answer_bar=1, bars=2)
    assert t.bar(1) == {} and t.bar(2) == {}


def test_template_mix_pulls_an_untrained_model_onto_the_phrase_shape() -> None:
    """An untrained model plays anything; with the templates its melody takes the phrase's onsets and pitches
    (its chord tones above them stay the model's)."""
    from models.continuation.model import ContinuationModel
    from tests.models.test_continuation import _tiny_model

    live = ContinuationModel(_tiny_model(), Tokenizer())
    phrase = [(n.pitch, 90, n.onset * 40, n.duration * 40) for n in  # 480 ticks a quarter, 12 steps a quarter
              _bars([[60, 64, 67, 72], [71, 67, 62, 59]])]
    wanted = {(p, s % (4 * 480)) for p, _, s, _ in phrase}

    def share(template_mix: float) -> float:
        hits = total = 0
        for seed in range(4):
            answer = list(live.stream(phrase, ppq=480, length_ticks=2 * 4 * 480, seed=seed, style_mix=0.0,
                                      copy_share=1.0, template_mix=template_mix))
            melody = {s: min(p for p, _, t, _ in answer if t == s) for _, _, s, _ in answer}  # first pitch at
            hits += sum((p, s % (4 * 480)) in wanted for s, p in melody.items())  # an onset: the one mixed
            total += len(melody)
        return hits / max(1, total)

    assert share(0.9) > 0.4 and share(0.0) < 0.15
