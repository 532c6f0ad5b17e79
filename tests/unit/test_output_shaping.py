"""The preset's [midi] quantize, humanize and velocity curve shape every generated answer's notes."""

from __future__ import annotations

from companion.core.events import PPQ, Note, Phrase, RequestAnswer
from companion.worker.generators import _to_absolute

BAR = 4 * PPQ
PHRASE = Phrase((Note(60, 80, 0, PPQ),), 0, BAR)
RAW = [(62, 100, 7, 200), (64, 40, PPQ // 2 + 33, 200), (65, 127, PPQ + 250, 3000)]


def _shape(**settings: object) -> list[Note]:
    request = RequestAnswer(PHRASE, 2 * BAR, 3 * BAR, "answer-1", 7, None, dict(settings))
    return list(_to_absolute(request, iter(RAW)))


def test_defaults_keep_the_models_notes_clipped_to_the_answer() -> None:
    notes = _shape()
    assert [(n.pitch, n.velocity, n.start_ticks - 2 * BAR) for n in notes] == [(p, v, o) for p, v, o, _ in RAW]
    assert notes[-1].end_ticks == 3 * BAR


def test_quantize_snaps_starts_to_the_grid() -> None:
    notes = _shape(quantize="1/8")
    assert [(n.start_ticks - 2 * BAR) % (PPQ // 2) for n in notes] == [0, 0, 0]
    assert [n.start_ticks - 2 * BAR for n in notes] == [0, PPQ // 2, PPQ + PPQ // 2]


def test_velocity_curves() -> None:
    assert [n.velocity for n in _shape(velocity_curve="fixed", fixed_velocity=90)] == [90, 90, 90]
    soft, hard = _shape(velocity_curve="soft"), _shape(velocity_curve="hard")
    assert all(s.velocity < r[1] < h.velocity for s, h, r in zip(soft[:2], hard[:2], RAW[:2], strict=True))


def test_humanize_is_seeded_bounded_and_never_before_the_answer() -> None:
    a, b = _shape(humanize=1.0), _shape(humanize=1.0)
    assert a == b, "the same seed gives the same feel"
    assert a != _shape()
    for note, (_, velocity, onset, _) in zip(a, RAW, strict=True):
        assert abs(note.start_ticks - (2 * BAR + onset)) <= PPQ // 16 and note.start_ticks >= 2 * BAR
        assert abs(note.velocity - velocity) <= 20 or note.velocity in (1, 127)
