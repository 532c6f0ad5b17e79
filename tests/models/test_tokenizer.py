"""Tokenizer: vocabulary layout, config round trip, notes -> tokens -> notes exact on the grid, streaming."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.tokenizer import GridNote, StreamDecoder, Tokenizer, TokenizerConfig, transpose_key_token

TOK = Tokenizer()
CENTRES = [TOK.bin_velocity(b) for b in range(TOK.config.velocity_bins)]


def test_config_round_trips_through_json() -> None:
    cfg = TokenizerConfig(positions_per_beat=24, styles=("folk", "user"))
    again = TokenizerConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert Tokenizer(again).vocab.size == Tokenizer(cfg).vocab.size


def test_vocab_blocks_are_contiguous_and_names_unique() -> None:
    v = TOK.vocab
    expected_start = 0
    for name in v.BLOCK_ORDER:
        assert v.block(name).start == expected_start
        expected_start = v.block(name).stop
    assert expected_start == v.size
    names = [v.name(t) for t in range(v.size)]
    assert len(set(names)) == v.size
    assert v.name(v.token("pitch", 60)) == "pitch:60"
    assert v.name(v.key((9, "minor"))) == "key:Am"
    assert v.name(v.meter("6/8")) == "meter:6/8"


def test_bar_positions_follow_the_meter() -> None:
    assert TOK.config.bar_positions("4/4") == 48
    assert TOK.config.bar_positions("6/8") == 36
    assert TOK.config.bar_positions("2/2") == 48
    assert TOK.config.max_bar_positions == 96


def _sorted(notes: list[GridNote]) -> list[GridNote]:
    return sorted(notes, key=lambda n: (n.onset, n.pitch))


CASES = {
    "melody in 16ths": ("4/4", [GridNote(3 * i, 3, 60 + i % 7, 88) for i in range(20)]),
    "triplets and pickup": ("3/4", [GridNote(32, 4, 67, 72), GridNote(36, 4, 69, 72), GridNote(40, 4, 71, 72),
                                     GridNote(48, 12, 72, 104)]),
    "chords": ("4/4", [GridNote(0, 24, 48, 88), GridNote(0, 24, 52, 88), GridNote(0, 24, 55, 56),
                       GridNote(24, 6, 60, 120), GridNote(24, 48, 64, 120)]),
    "compound meter with rests and empty bars": ("6/8", [GridNote(0, 18, 62, 88), GridNote(108, 6, 64, 88)]),
    "long notes": ("2/2", [GridNote(0, 192, 40, 40), GridNote(96, 96, 47, 40)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_notes_tokens_notes_is_exact_on_the_grid(name: str) -> None:
    meter, notes = CASES[name]
    tokens = TOK.encode_piece(notes, style="folk", meter=meter, key=(2, "major"))
    assert TOK.decode(tokens) == _sorted(notes)
    assert tokens[-1] == TOK.vocab.eos


grid_notes = st.lists(
    st.builds(GridNote, onset=st.integers(0, 400), duration=st.sampled_from(TOK.config.durations),
              pitch=st.integers(0, 127), velocity=st.sampled_from(CENTRES)),
    max_size=40, unique_by=lambda n: (n.onset, n.pitch))


@settings(max_examples=60, deadline=None)
@given(notes=grid_notes, meter=st.sampled_from(TOK.config.meters))
def test_round_trip_property(notes: list[GridNote], meter: str) -> None:
    tokens = TOK.encode_piece(notes, style="user", meter=meter, key=None)
    assert TOK.decode(tokens) == _sorted(notes)


@pytest.mark.parametrize("ppq", [480, 96, 960])
def test_prompt_in_ticks_round_trips(ppq: int) -> None:
    sixteenth = ppq // 4
    notes = [(60 + i, 88, i * sixteenth, sixteenth) for i in range(6)] + [(72, 104, 8 * sixteenth, ppq)]
    prompt = TOK.encode_prompt(notes, ppq=ppq, style="folk", meter="4/4")
    assert prompt.answer_start == 48  # the bar line after the phrase
    dec = StreamDecoder(TOK)
    back = [n for n in (dec.feed(t) for t in prompt.tokens) if n is not None]
    as_ticks = [(n.pitch, n.velocity, TOK.steps_to_ticks(n.onset, ppq), TOK.steps_to_ticks(n.duration, ppq))
                for n in back]
    assert as_ticks == notes
    assert dec.bar == 1 and dec.last_kind == "bar"  # the answer's bar is open


def test_prompt_with_answer_mid_bar_sets_min_pos() -> None:
    notes = [(60, 88, 0, 240), (62, 88, 480, 240), (64, 88, 1440, 240)]  # the last note is after the start
    prompt = TOK.encode_prompt(notes, ppq=480, style="folk", answer_start_ticks=960)
    assert prompt.answer_start == 24 and prompt.min_pos == 24
    assert [n.pitch for n in TOK.decode(prompt.tokens)] == [60, 62]


def test_prompt_keeps_the_most_recent_bars() -> None:
    notes = [(60 + b, 88, b * 1920, 480) for b in range(8)]
    prompt = TOK.encode_prompt(notes, ppq=480, style="folk", max_bars=3)
    assert prompt.start_bar == 6
    assert [n.pitch for n in TOK.decode(prompt.tokens)] == [66, 67]


def test_stream_decoder_gives_each_note_at_its_duration_token() -> None:
    notes = [GridNote(0, 6, 60, 88), GridNote(6, 6, 62, 88), GridNote(12, 12, 64, 88)]
    tokens = TOK.encode_piece(notes, style="folk", meter="4/4", key=(0, "major"))
    dec = StreamDecoder(TOK)
    got = []
    for t in tokens:
        n = dec.feed(t)
        if n is not None:
            assert TOK.vocab.kind(t) == "dur"
            got.append(n)
    assert got == notes


def test_stream_decoder_skips_tokens_that_break_the_grammar() -> None:
    v = TOK.vocab
    dec = StreamDecoder(TOK)
    for t in TOK.header("folk", "4/4", None) + [v.bar]:
        dec.feed(t)
    assert dec.feed(v.token("dur", 3)) is None  # a duration with no pitch
    assert dec.skipped == 1
    assert dec.expected() == ("pos", "bar", "eos")


def test_durations_snap_to_the_nearest_representable() -> None:
    assert TOK.quantize_duration(0) == 1
    assert TOK.quantize_duration(50) == 48
    assert TOK.quantize_duration(1000) == max(TOK.config.durations)


def test_transposing_the_key_token_wraps_the_tonic() -> None:
    v = TOK.vocab
    assert transpose_key_token(v, v.key((11, "minor")), 2) == v.key((1, "minor"))
    assert transpose_key_token(v, v.key(None), 5) == v.key(None)
