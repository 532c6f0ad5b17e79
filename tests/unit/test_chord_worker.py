"""The lead-sheet harmony worker with a tiny real chord model, played by the real engine: harmonic rhythm,
the clash guard, the left hand's chord, the key lock, the clock styles, silence at the end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harmony_fakes import MELODY, RecordingSend, perform, run

from companion.core.engine import EngineSettings
from companion.core.events import PPQ, HarmonizeNote, StopHarmony
from companion.core.modes.harmonize import HarmonyPulse
from companion.harmony.chord_worker import ChordWorker, key_allowed, match_chord
from models.chords import vocab
from models.chords.net import ChordNet
from models.chords.stepper import ChordConfig, ChordStepper

C_MAJOR = frozenset({0, 2, 4, 5, 7, 9, 11})
TUNE = [(60 + (0, 4, 7, 5, 2, 11, 7, 0)[i % 8], i * PPQ // 2, PPQ // 2 - 20) for i in range(32)]  # eighths


@pytest.fixture(scope="module")
def stepper() -> ChordStepper:
    torch.manual_seed(0)
    net = ChordNet(ChordConfig(n_hidden=16, n_embd=8))
    return ChordStepper(net.state_dict(), net.config)


def _worker(send: RecordingSend, stepper: ChordStepper, names: list[str] | None = None) -> ChordWorker:
    worker = ChordWorker(send, lambda: stepper, on_chord=(names.append if names is not None else None))
    worker.load()
    assert worker.failed is None
    return worker


def test_the_chord_changes_only_on_change_lines_or_for_a_clash(stepper: ChordStepper) -> None:
    for every in ("bar", "half_bar", "beat"):
        send = RecordingSend()
        worker = _worker(send, stepper)
        settings = EngineSettings(mode="harmonize", harmony_style="pad", change_every=every)
        chord = None
        for command in perform(settings, TUNE):
            worker.process(command)
            if worker.current != chord and chord is not None:
                rubs = command.pitch % 12 in {(pc + d) % 12 for pc in _pcs(chord) for d in (1, -1)} - _pcs(chord) \
                    if isinstance(command, HarmonizeNote) else False
                assert getattr(command, "may_change", False) or rubs, (every, command, chord, worker.current)
            chord = worker.current
        worker.process(StopHarmony(100 * PPQ))
        assert send.note_ons() and send.sounding == set() and worker.counts["errors"] == 0


def _pcs(name: str) -> set[int]:
    return set(vocab.chord_pcs(next(i for i in range(vocab.N_CHORDS) if vocab.chord_name(i) == name)))


def test_the_left_hand_chord_is_the_chord_played(stepper: ChordStepper) -> None:
    send = RecordingSend()
    worker = _worker(send, stepper)
    settings = EngineSettings(mode="harmonize", harmony_style="pad")
    d_minor = frozenset({2, 5, 9})
    worker.process(HarmonizeNote(74, 100, 0, 0, 0, True, C_MAJOR, d_minor, settings))
    assert worker.current == "Dm"
    assert {m.note % 12 for m in send.note_ons()} == set(d_minor)
    assert match_chord(frozenset({7, 11, 2, 5})) == vocab.chord_index(7, "7")


def test_the_key_lock_allows_one_note_outside_the_key(stepper: ChordStepper) -> None:
    allowed = key_allowed(C_MAJOR)
    assert allowed[vocab.chord_index(2, "7")] and allowed[vocab.chord_index(0, "")]  # D7 (F#), C
    assert not allowed[vocab.chord_index(1, "")] and key_allowed(None).all()  # Db major: two outside
    send = RecordingSend()
    worker = _worker(send, stepper)
    settings = EngineSettings(mode="harmonize", harmony_style="block", key="C major")
    for command in perform(settings, TUNE):
        worker.process(command)
        if worker.current is not None:
            assert len(_pcs(worker.current) - C_MAJOR) <= 1


def test_block_chords_sit_under_the_melody_note(stepper: ChordStepper) -> None:
    send = RecordingSend()
    worker = _worker(send, stepper)
    settings = EngineSettings(mode="harmonize", harmony_style="block", change_every="beat")
    for command in perform(settings, MELODY):
        worker.process(command)
        if isinstance(command, HarmonizeNote) and send.sounding:
            assert all(command.pitch - 12 <= p < command.pitch for _, p in send.sounding)
    assert send.sounding == set()  # block chords end with the melody note


@pytest.mark.parametrize("style", ["comping", "arpeggio"])
def test_clock_styles_strike_on_the_grid_and_stop_with_the_piece(stepper: ChordStepper, style: str) -> None:
    send = RecordingSend()
    worker = _worker(send, stepper)
    settings = EngineSettings(mode="harmonize", harmony_style=style, change_every="bar")
    commands = perform(settings, [(67, 0, 3 * PPQ), (65, 4 * PPQ, 3 * PPQ)], end_ticks=12 * PPQ)
    pulses = [c for c in commands if isinstance(c, HarmonyPulse)]
    assert pulses and [p.step_index for p in pulses] == list(range(1, len(pulses) + 1))
    ons_at: list[int] = []
    for command in commands:
        before = len(send.note_ons())
        worker.process(command)
        if len(send.note_ons()) > before:
            ons_at.append(command.step_index if not isinstance(command, StopHarmony) else -1)
    assert len(ons_at) >= 6, "the style keeps striking while the melody holds and rests"
    if style == "arpeggio":
        assert all(s % 2 == 0 for s in ons_at)  # an eighth-note arpeggio in 4/4
    else:
        assert all(s % 16 in (0, 6, 8, 14) for s in ons_at)  # 1, 2&, 3, 4&
    assert send.sounding == set(), "the piece ended (a bar of rest): every note is off"
    assert worker.counts["errors"] == 0


def test_shipped_chord_model_loads_and_harmonizes_a_scale() -> None:
    from companion.harmony.chord_worker import load_chord_model

    send, names = RecordingSend(), []
    worker = _worker(send, load_chord_model(), names)
    settings = EngineSettings(mode="harmonize", harmony_style="pad", key="C major", change_every="bar")
    run(worker, perform(settings, [(60 + s, i * PPQ, PPQ - 10) for i, s in enumerate((0, 2, 4, 5, 7, 9, 11, 12))]))
    assert names and all(len(_pcs(n) - C_MAJOR) <= 1 for n in names)
    assert np.all([m.channel == 0 for m in send.note_ons()])


def test_a_long_tonic_note_at_the_end_of_a_phrase_cadences_on_the_tonic(stepper: ChordStepper) -> None:
    send = RecordingSend()
    worker = _worker(send, stepper)
    settings = EngineSettings(mode="harmonize", harmony_style="pad", change_every="beat", key="C major")
    phrase = [(p, i * PPQ, PPQ - 20) for i, p in enumerate((67, 65, 62, 71, 67, 65, 62, 71))]  # G F D B ...
    ending = [(64, 8 * PPQ + PPQ // 2, 3 * PPQ)]  # E (the tonic's third) off the beat, held over two beat lines
    chords = []
    for command in perform(settings, phrase + ending):
        worker.process(command)
        chords.append(worker.current)
    assert "C" in chords[-12:] and chords[-1] == "C"  # the held third cadences on C at a beat line
    worker.process(StopHarmony(100 * PPQ))
    assert send.sounding == set()
