"""The widgets' pure parts: piano-roll layout, control scaling, the transport and meters text, the piano's bytes."""

from __future__ import annotations

import pytest

from companion.core.events import PPQ
from companion.tui.controls import CONTROLS, CONTROLS_BY_KEY, setting_value
from companion.tui.keyboard import KeyboardPiano, note_name
from companion.tui.meters import beat_indicator, meters_text, transport_text
from companion.tui.piano_roll import (
    COMMITTED_STYLE,
    COMPANION_STYLE,
    LABEL_CELLS,
    PLAYER_STYLE,
    TENTATIVE_STYLE,
    RollView,
    fit_pitch_window,
    render_roll,
    ticks_per_col_for,
)

BAR = 4 * PPQ
SIXTEENTH = PPQ // 4


def cell(lines: list, pitch: int, col: int, view: RollView) -> tuple[str, str]:
    """(character, style) of the roll at `pitch` and grid column `col`."""
    line = lines[1 + view.low_pitch + view.rows - 1 - pitch]
    at = LABEL_CELLS + col
    styles = [str(span.style) for span in line.spans if span.start <= at < span.end]
    return line.plain[at], styles[-1] if styles else ""


def test_roll_places_played_sounding_and_planned_notes_around_the_playhead() -> None:
    view = RollView(now_ticks=8 * BAR, ticks_per_col=SIXTEENTH, low_pitch=58, rows=12, cols=40, bar_ticks=BAR)
    head = view.playhead_col  # 28
    notes = [("player", 60, 8 * BAR - PPQ, 8 * BAR - PPQ // 2),  # a quarter ago, an eighth long: 2 columns
             ("companion", 64, 8 * BAR - SIXTEENTH, None)]  # sounding now
    planned = [(67, 8 * BAR + PPQ, 8 * BAR + 2 * PPQ, True), (69, 8 * BAR + 2 * PPQ, 8 * BAR + 3 * PPQ, False)]
    lines = render_roll(notes, planned, view)
    assert len(lines) == 13 and all(len(line.plain) == LABEL_CELLS + 40 for line in lines)
    assert cell(lines, 60, head - 4, view) == ("█", PLAYER_STYLE)
    assert cell(lines, 60, head - 3, view) == ("█", PLAYER_STYLE)
    assert cell(lines, 60, head - 2, view)[0] != "█"
    assert cell(lines, 64, head - 1, view) == ("█", COMPANION_STYLE)
    assert cell(lines, 64, head + 1, view)[0] != "█"  # a sounding note ends at the playhead
    assert [cell(lines, 67, head + c, view) for c in range(4, 8)] == [("▓", COMMITTED_STYLE)] * 4
    assert [cell(lines, 69, head + c, view) for c in range(8, 12)] == [("░", TENTATIVE_STYLE)] * 4
    assert cell(lines, 62, head, view)[0] == "│"  # the playhead
    assert lines[1 + 58 + 11 - 60].plain.startswith("C4")
    assert lines[0].plain[LABEL_CELLS + head] == "9"  # bar 9 starts at the playhead


def test_roll_clips_notes_outside_the_window() -> None:
    view = RollView(now_ticks=0, ticks_per_col=SIXTEENTH, low_pitch=60, rows=4, cols=16, bar_ticks=BAR)
    lines = render_roll([("player", 90, -BAR * 9, -BAR * 8), ("player", 61, -10 * BAR, 10 * BAR)], [], view)
    assert "█" * 16 in lines[1 + 60 + 3 - 61].plain  # a long note fills the row, clipped at both edges
    assert sum(line.plain.count("█") for line in lines) == 16


def test_pitch_window_stays_put_while_the_music_fits_and_follows_when_it_leaves() -> None:
    assert fit_pitch_window([], 20, None) == 50
    assert fit_pitch_window([60, 64], 20, None) == 53
    assert fit_pitch_window([60, 70], 20, 53) == 53
    assert fit_pitch_window([80], 20, 53) == 71  # centred on the new note
    assert fit_pitch_window(list(range(30, 100)), 20, 53) == 55
    assert fit_pitch_window([127], 20, None) == 108


def test_at_least_four_bars_fit_across_the_roll() -> None:
    assert ticks_per_col_for(120, BAR) == SIXTEENTH
    assert ticks_per_col_for(40, BAR) * 40 >= 4 * BAR


@pytest.mark.parametrize("spec", CONTROLS, ids=lambda s: s.key)
def test_every_control_steps_within_its_range_and_takes_the_whole_cc_range(spec) -> None:  # noqa: ANN001
    low, high = spec.from_cc(0), spec.from_cc(127)
    if spec.kind == "bool":
        assert (low, high, spec.from_cc(63), spec.from_cc(64)) == (False, True, False, True)
        assert spec.step_value(True, 1) is False
    elif spec.kind == "choice":
        assert (low, high) == (spec.choices[0], spec.choices[-1])
        n = len(spec.choices)
        assert [spec.from_cc(-(-128 * i // n)) for i in range(n)] == list(spec.choices)  # one slice each
        assert spec.step_value(spec.choices[-1], 1) == spec.choices[0]
    else:
        assert (low, high) == (spec.low, spec.high)
        assert spec.step_value(spec.high, 1) == spec.high
        assert spec.step_value(spec.low, -1) == (None if spec.none_label else spec.low)
        assert spec.low < spec.from_cc(64) < spec.high


def test_temperature_knob_lands_on_the_keys_steps() -> None:
    spec = CONTROLS_BY_KEY["temperature"]
    assert spec.from_cc(64) == pytest.approx(1.05)
    assert spec.step_value(1.0, 1) == 1.05


def test_setting_values_come_from_the_settings_or_the_presets_extras() -> None:
    settings = {"temperature": 0.7, "extras": {"harmony_style": "pad", "distance": 3.0}}
    assert setting_value(settings, CONTROLS_BY_KEY["temperature"]) == 0.7
    assert setting_value(settings, CONTROLS_BY_KEY["harmony_style"]) == "pad"
    assert setting_value(settings, CONTROLS_BY_KEY["distance"]) == 1.0  # clamped into the control's range
    assert setting_value({}, CONTROLS_BY_KEY["density"]) is None  # auto


def test_density_steps_from_auto_and_back() -> None:
    spec = CONTROLS_BY_KEY["density"]
    assert spec.format(None) == "auto" and spec.step_value(None, 1) == 4.0 and spec.step_value(None, -1) is None
    assert spec.step_value(0.5, -1) is None and spec.step_value(4.0, 1) == 4.5


def test_transport_shows_lost_ports_tempo_position_and_recording() -> None:
    snap = {"ports": {"backend": "alsa", "in": "Keystep", "out": "Companion Out", "lost": ["Keystep"]},
            "bpm": 96.5, "bar": 12, "beat": 2, "beats_per_bar": 3, "clock": "external", "clock_running": True,
            "engine": {"mode": "call_response", "key": "A minor"}, "preset": "jazz", "generator": "transformer"}
    text = transport_text(snap, recording=True).plain
    for shown in ("LOST", "Keystep", "external", "96.5 bpm", "bar   12", "beat 2", "jazz", "call_response",
                  "transformer", "A minor", "REC"):
        assert shown in text, shown
    assert "connected" not in text
    assert "CHORD" not in text  # no lead-sheet harmony playing
    harmonizing = {**snap, "engine": {"mode": "harmonize"}, "harmony": {"chord": "Am7", "next_chord": "D7"}}
    assert "CHORD Am7 → D7" in transport_text(harmonizing, recording=False).plain
    lit = [span for span in beat_indicator(2, 3, running=True).spans if "on" in str(span.style)]
    assert len(lit) == 1 and "on green" in str(lit[0].style)
    assert not [span for span in beat_indicator(2, 3, running=False).spans if "on" in str(span.style)]


def test_meters_show_lateness_in_ms_and_colour_it_by_how_late() -> None:
    text = meters_text({"counters": {"notes_in": 12, "notes_out": 30}, "lateness": {"p99_ns": 12_500_000},
                        "generation_ms": 38.0, "malformed": {"stray_data": 2, "truncated": 1}})
    assert "12.50ms" in text.plain and "38.0ms" in text.plain
    assert "30" in text.plain and "malformed      3" in text.plain
    assert any("red" in str(span.style) for span in text.spans)


def test_keyboard_piano_bytes_and_range() -> None:
    piano = KeyboardPiano(channel=2, velocity=90, gate_ns=100)
    assert piano.press("k", 0) == [[0x92, 72, 90]]
    assert piano.press("k", 50) == []
    assert piano.due(120) == [] and piano.due(150) == [[0x82, 72, 0]]
    for _ in range(20):
        piano.shift_octave(1)
    assert piano.pitch_for("'") is None and piano.pitch_for("a") == 120  # beyond 127 plays nothing
    assert piano.press("a", 0) == [[0x92, 120, 90]] and piano.release_all() == [[0x82, 120, 0]]
    assert note_name(60) == "C4" and note_name(61) == "C#4"


def test_transport_shows_the_link_session_and_its_peers() -> None:
    snap = {"ports": {"backend": "jack", "in": "Companion In", "out": "Companion Out", "lost": []},
            "bpm": 128.0, "bar": 3, "beat": 1, "beats_per_bar": 4, "clock": "link", "clock_running": False,
            "link": {"peers": 2, "playing": False, "start_stop": True, "quantum": 4.0}}
    text = transport_text(snap, recording=False).plain
    assert "link" in text and "2 peers" in text and "128.0 bpm" in text
    alone = transport_text({**snap, "link": {**snap["link"], "peers": 1}}, recording=False).plain
    assert "1 peer " in alone
    internal = transport_text({**snap, "clock": "internal", "link": None}, recording=False).plain
    assert "peer" not in internal
