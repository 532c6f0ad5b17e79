"""The chord model's pieces: vocabulary, features, the numpy stepper against torch, decoding, rule, metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.chords import vocab
from models.chords.data import Song
from models.chords.decode import (
    CADENCE_BONUS,
    INNER_CADENCE_BONUS,
    LiveChords,
    cadence,
    change_allowed,
    change_costs,
    decode_live,
    decode_offline,
    diatonic_triads,
    home_chords,
    live_phrase_end,
    note_fit,
    rule_chords,
    viterbi,
)
from models.chords.evaluate import song_metrics, tonic_chord
from models.chords.features import N_FEATURES, frame_of, melody_key, mode_in_frame, phrase_ends, song_arrays
from models.chords.net import ChordNet
from models.chords.stepper import ChordConfig, ChordStepper
from models.chords.train import rotate, to_frame


def _song(melody: list[int], chords: list[int], steps_per_slot: int = 4, per_bar: int = 4) -> Song:
    m = np.array(melody, dtype=np.int16)
    onset = np.r_[True, m[1:] != m[:-1]]
    n_slots = len(m) // steps_per_slot
    pos = (np.arange(n_slots) % per_bar).astype(np.int8)
    return Song("test/x", "openewld", m, onset, np.array(chords, dtype=np.int16), pos, steps_per_slot, (0, "major"))


def test_labels_parse_to_the_vocabulary() -> None:
    assert vocab.chord_name(vocab.parse_pop909("B:maj")) == "B"
    assert vocab.chord_name(vocab.parse_pop909("A:min7/b3")) == "Am7"
    assert vocab.chord_name(vocab.parse_pop909("Db:hdim7")) == "Dbdim"
    assert vocab.parse_pop909("N") == vocab.NO_CHORD
    assert vocab.parse_pop909("H:maj") is None
    assert vocab.chord_pcs(vocab.chord_index(7, "7")) == (7, 11, 2, 5)
    assert vocab.major_frame(frozenset({9, 11, 0, 2, 4, 5, 7})) == 0  # A minor reads in C major's frame
    assert frame_of((9, "minor")) == 0 and frame_of((7, "major")) == 7


def test_features_rotate_with_the_frame() -> None:
    melody = np.array([60, 60, 62, 62, 64, 64, 65, 65] * 2)
    pos = np.array([0, 1, 2, 3], dtype=np.int8)
    in_c = song_arrays(melody, pos, 4, 0, lookahead=True)
    in_d = song_arrays(melody + 2, pos, 4, 2, lookahead=True)
    assert in_c.shape == (4, N_FEATURES)
    np.testing.assert_allclose(in_c, in_d)  # the same tune a tone up, read in its own frame
    np.testing.assert_allclose(rotate(song_arrays(melody + 2, pos, 4, 0, lookahead=True), 2), in_c)
    assert to_frame(np.array([vocab.chord_index(2, "m"), -1]), 2).tolist() == [vocab.chord_index(0, "m"), -1]


def test_numpy_stepper_matches_the_torch_network() -> None:
    torch.manual_seed(0)
    net = ChordNet(ChordConfig(n_hidden=16, n_embd=8)).eval()
    stepper = ChordStepper(net.state_dict(), net.config)
    x = torch.randn(1, 5, N_FEATURES)
    prev = torch.tensor([[vocab.N_CHORDS, 3, 10, 3, 40]])
    with torch.no_grad():
        want = torch.log_softmax(net(x, prev), -1)[0].numpy()
    h = stepper.initial()
    for s in range(5):
        logp, h = stepper.step(h, x[0, s:s + 1].numpy(), prev[0, s:s + 1].numpy())
        np.testing.assert_allclose(logp[0], want[s], atol=1e-4)


@pytest.fixture
def stepper() -> ChordStepper:
    torch.manual_seed(1)
    net = ChordNet(ChordConfig(n_hidden=16, n_embd=8))
    return ChordStepper(net.state_dict(), net.config)


def test_offline_decoding_keeps_the_harmonic_rhythm(stepper: ChordStepper) -> None:
    melody = np.repeat([60, 64, 67, 65, 62, 59, 67, 60, 57, 60, 64, 62, 67, 71, 74, 72], 4)
    pos = (np.arange(16) % 4).astype(np.int8)
    for every in ("bar", "half_bar"):
        chords = decode_offline(stepper, melody, pos, 4, (0, "major"), every)
        allowed = change_allowed(pos, every)
        assert len(chords) == 16
        assert all(chords[s] == chords[s - 1] for s in range(1, 16) if not allowed[s]), every
    live = decode_live(stepper, melody, pos, 4, (0, "major"), "bar")
    moved = [s for s in range(1, 16) if pos[s] != 0 and live[s] != live[s - 1]]
    assert all(note_fit(int(melody[4 * s]))[live[s - 1]] < 0 for s in moved)  # off the bar line: only a clash moves it


def test_offline_decoding_ends_on_the_tonic_under_a_tonic_note(stepper: ChordStepper) -> None:
    melody = np.repeat([67, 65, 64, 62, 60, 60, 60, 60], 4)
    chords = decode_offline(stepper, melody, (np.arange(8) % 4).astype(np.int8), 4, (0, "major"), "beat")
    assert tonic_chord(int(chords[-1]), (0, "major"))


def test_the_rule_takes_the_triad_covering_most_of_each_bar() -> None:
    assert [vocab.chord_name(c) for c in diatonic_triads((9, "minor"))] == ["Am", "Bdim", "C", "Dm", "Em", "F", "G"]
    melody = np.array([60] * 8 + [64] * 4 + [67] * 4 + [65] * 8 + [69] * 8)  # C E G | F A
    pos = (np.arange(8) % 4).astype(np.int8)
    chords = rule_chords(melody, pos, 4, (0, "major"), "bar")
    assert [vocab.chord_name(c) for c in chords] == ["C"] * 4 + ["F"] * 4


def test_metrics_of_a_known_harmonization() -> None:
    c, g = vocab.chord_index(0, ""), vocab.chord_index(7, "")
    melody = [60] * 16 + [62] * 15 + [60]  # C for a bar over C, then D over G, ending on C
    song = _song(melody, [c] * 16 + [g] * 16)
    right = song_metrics(song, np.array([c] * 4 + [g] * 4))
    assert right["chord_acc"] == 1.0 and right["bass_root"] == 1.0 and right["jaccard"] == 1.0
    assert right["melody_in_chord"] == 31 / 32 and right["clash"] == 1 / 32  # the last C rubs against G's B
    assert right["ends_on_tonic"] == 0.0 and right["changes_per_bar"] == 0.5
    wrong = song_metrics(song, np.array([c] * 8))  # D over C: a tone, not a rub; C over G: in
    assert wrong["chord_acc"] == 0.5 and wrong["melody_in_chord"] == pytest.approx(17 / 32)
    assert wrong["jaccard"] == pytest.approx(0.5 + 0.5 * 0.2)  # C vs G share one of five pitch classes
    assert wrong["ends_on_tonic"] == 1.0


def test_phrase_ends_and_the_cadences_kept() -> None:
    """A phrase ends on a note followed by half a bar of rest, and at the song's last note; a cadence is a phrase
    end where the real chord is the tonic: kept when ours is the tonic there too."""
    c, g = vocab.chord_index(0, ""), vocab.chord_index(7, "")
    # bar 1: C E, half a bar of rest; bar 2: D B (a half cadence), rest; bar 3: E D C
    melody = [60] * 4 + [64] * 4 + [-1] * 8 + [62] * 4 + [71] * 4 + [-1] * 8 + [64] * 4 + [62] * 4 + [60] * 8
    song = _song(melody, [c] * 16 + [g] * 16 + [c] * 16)
    assert phrase_ends(song.melody, song.slot_pos, 4, song.onset) == phrase_ends(song.melody, song.slot_pos, 4) \
        == [4, 20, 40]
    short = _song([60] * 4 + [-1] * 4 + [62] * 8, [c] * 16)
    assert phrase_ends(short.melody, short.slot_pos, 4) == [8]  # a quarter's rest ends no phrase
    truth_like = song_metrics(song, np.array([c] * 4 + [g] * 4 + [c] * 4))
    assert truth_like["phrase_ends_on_tonic"] == pytest.approx(2 / 3) and truth_like["cadences_kept"] == 1.0
    assert truth_like["annotation_phrase_ends_on_tonic"] == pytest.approx(2 / 3)
    ends_on_g = song_metrics(song, np.array([c] * 4 + [g] * 4 + [c] * 2 + [g] * 2))
    assert ends_on_g["cadences_kept"] == 0.5 and ends_on_g["phrase_ends_on_tonic"] == pytest.approx(1 / 3)


def test_melody_cadences_close_only_the_phrases_ending_on_the_tonics_root_or_third() -> None:
    c_major = (0, "major")
    tonic = vocab.chord_index(0, "")
    # phrase 1 ends on E (the tonic's third), phrase 2 on G (a fifth: a half cadence is as likely), the song on C
    melody = np.array([60] * 4 + [64] * 4 + [-1] * 8 + [62] * 4 + [67] * 4 + [-1] * 8 + [62] * 4 + [60] * 12)
    pos = (np.arange(12) % 4).astype(np.int8)
    bonus = cadence(melody, pos, 4, c_major, c_major, cadences="melody")
    assert bonus[1, tonic] == INNER_CADENCE_BONUS > 0  # the E at step 4: slot 1
    assert bonus[5].sum() == 0  # the G at step 20
    assert all(bonus[slot, tonic] == CADENCE_BONUS for slot in (9, 10, 11))  # under all of the last C
    assert bonus.sum() == INNER_CADENCE_BONUS + 3 * CADENCE_BONUS
    assert cadence(melody, pos, 4, c_major, cadences="melody").sum() == 3 * CADENCE_BONUS  # no song key: the end


def test_home_cadences_close_every_phrase_on_a_tonic_chord_its_last_note_sits_on() -> None:
    c_major, a_minor = (0, "major"), (9, "minor")
    triad, maj7, sus4 = (vocab.chord_index(0, q) for q in ("", "maj7", "sus4"))
    assert home_chords(64, c_major) == [triad, maj7]  # E: in both; Csus4 (C F G) rubs against it
    assert home_chords(65, c_major) == [sus4]  # F rubs against the triad's E: only Csus4 holds it
    assert home_chords(71, c_major) == [maj7]  # B rubs against C: Cmaj7
    assert home_chords(61, c_major) == []  # C#: against every one of them, no cadence forced
    minor_family = [vocab.chord_index(9, q) for q in ("m", "m7", "sus4")]
    assert home_chords(67, a_minor) == minor_family  # G, a tone from A, E and D: it rubs against none
    assert home_chords(68, a_minor) == []  # the leading tone G# rubs against A: no cadence on it
    # phrases end on E, G (a fifth), F, and the song on C: every one gets a bonus, on the chords that hold its note
    melody = np.array([64] * 8 + [-1] * 8 + [67] * 8 + [-1] * 8 + [65] * 8 + [-1] * 8 + [60] * 8)
    pos = (np.arange(14) % 4).astype(np.int8)
    bonus = cadence(melody, pos, 4, c_major, c_major)
    for slot in (0, 1):  # every slot the phrase's last note sounds in
        assert set(np.nonzero(bonus[slot])[0]) == {triad, maj7} and bonus[slot, triad] == INNER_CADENCE_BONUS
    assert set(np.nonzero(bonus[4])[0]) == set(np.nonzero(bonus[5])[0]) == {triad, maj7, sus4}  # G: in all three
    assert set(np.nonzero(bonus[8])[0]) == {sus4}
    assert not bonus[[2, 3, 6, 7, 10, 11]].any()  # rests
    for slot in (12, 13):  # the last C
        assert set(np.nonzero(bonus[slot])[0]) == {triad, maj7, sus4} and bonus[slot, triad] == CADENCE_BONUS
    with pytest.raises(ValueError, match="cadences must be one of home, melody"):
        decode_offline(None, melody, pos, 4, c_major, cadences="always")  # type: ignore[arg-type]


def test_the_key_of_a_whole_melody_hears_where_it_ends() -> None:
    body = [60, 62, 64, 65, 67, 69, 67, 65, 64, 62] * 2  # C D E F G A: C major or F major alike
    assert melody_key(np.repeat(body + [60], 4)) == (0, "major")
    assert melody_key(np.repeat(body + [65], 4)) == (5, "major")  # it ends on F: F major
    assert melody_key(np.array([-1, 62, 62])) == (2, "major")  # one pitch class: its own major key


def test_the_live_mode_guess_tells_a_minor_tune_from_its_relative_major() -> None:
    weights = np.zeros(12)
    weights[[9, 0, 4, 11, 2]] = [8, 3, 5, 2, 1]  # A C E B D, A the most: A minor in C major's frame
    assert mode_in_frame(weights, 0) == "minor"
    weights[[0, 4, 7, 9]] = [8, 5, 5, 1]  # C E G most: C major
    assert mode_in_frame(weights, 0) == "major"
    assert mode_in_frame(np.eye(12)[0] + np.eye(12)[4], 0) is None  # two pitch classes: not yet


def test_a_live_phrase_end_lands_on_the_tonic_unless_the_note_rubs(stepper: ChordStepper) -> None:
    live = LiveChords(stepper, frame=0, mode="major")
    c_major, g_major = vocab.chord_index(0, ""), vocab.chord_index(7, "")
    assert live.choose(64, 0, g_major, 0.0, phrase_end=True) == c_major  # E at a cadence: C
    assert live.choose(71, 0, g_major, 0.0, phrase_end=True) != c_major  # B rubs against C: no cadence
    assert live_phrase_end(64, 0, 3, c_major) and live_phrase_end(60, 2, 1, c_major, held=True)
    assert not live_phrase_end(64, 0, 2, c_major) and not live_phrase_end(67, 0, 3, c_major)  # G: 5th, no
    assert not live_phrase_end(64, 0, 3, None)  # the mode not known yet: no cadence
    melody = np.repeat([67, 65, 64, 62, 64, 62, 60, 60], 4)  # ends on a long C, held over the line
    chords = decode_live(stepper, melody, (np.arange(8) % 4).astype(np.int8), 4, (0, "major"), "beat")
    assert tonic_chord(int(chords[-1]), (0, "major"))


def test_the_harmonic_rhythm_prior_makes_changes_cheapest_on_the_downbeat() -> None:
    costs = change_costs(np.array([0, 1, 2, 3, 0], dtype=np.int8), "beat")
    assert costs[0] < costs[2] < costs[1] == costs[3]
    assert np.isinf(change_costs(np.array([0, 1, 2, 3]), "bar")[1:]).all()
    assert change_costs(np.array([0, 1]), "melody")[0] > costs[0]
    scores = np.zeros((4, 2))
    scores[0, 0] = 2.0
    scores[1:, 1] = 0.4  # chord 1 gains 0.4 a slot from slot 1 on (1.2 in all): worth a change costing 0.3, not 1
    assert viterbi(scores, np.array([0.0, 1.5, 1.0, 1.5])).tolist() == [0, 0, 0, 0]
    assert viterbi(scores, np.array([0.0, 0.3, 1.0, 1.5])).tolist() == [0, 1, 1, 1]
