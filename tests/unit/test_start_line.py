"""The headless start line says where the tempo comes from (an explicit --bpm equal to the default is still
--bpm), and with Link whether Companion proposes it to the session it joins."""

from __future__ import annotations

from types import SimpleNamespace

from companion.app import config_from_args, start_line
from companion.cli import build_parser
from companion.presets.preset import parse_preset

NAMES = {"in": "Companion In", "out": "Companion Out", "backend": "jack"}
RUNTIME = SimpleNamespace(engine=SimpleNamespace(settings=SimpleNamespace(mode="call_response")),
                          answering_model="markov")
PRESET_110 = parse_preset("[clock]\nbpm = 110\n", source="t.toml", preset_id="slow")


def _line(argv: list[str], preset: object | None = None) -> tuple[str, object]:
    args = build_parser().parse_args(["run", "--headless", *argv])
    config = config_from_args(args, preset)  # type: ignore[arg-type]
    return start_line(config, NAMES, preset, RUNTIME), config  # type: ignore[arg-type]


def test_an_explicit_bpm_is_named_as_such_even_when_it_equals_the_default() -> None:
    line, config = _line(["--bpm", "120"], PRESET_110)
    assert config.bpm == 120.0 and config.bpm_source == "--bpm"  # type: ignore[attr-defined]
    assert "internal clock at 120 BPM (--bpm)" in line


def test_the_presets_tempo_and_the_default_are_said() -> None:
    line, config = _line([], PRESET_110)
    assert config.bpm == 110.0 and "preset slow's tempo" in line  # type: ignore[attr-defined]
    line, config = _line([])
    assert config.bpm_source == "default" and "the default; --bpm changes it" in line  # type: ignore[attr-defined]


def test_with_link_an_explicit_tempo_is_proposed_and_the_default_is_not() -> None:
    line, _ = _line(["--clock", "link", "--bpm", "96"])
    assert "96 BPM from --bpm, proposed to the session" in line
    line, _ = _line(["--clock", "link"])
    assert "the session's tempo; alone: 120 BPM" in line


def test_timed_output_is_the_default_and_can_be_turned_off() -> None:
    """On our JACK client planned notes are written at their frame unless --no-timed-output says otherwise."""
    parser = build_parser()
    assert config_from_args(parser.parse_args(["run"])).timed_output is True
    assert config_from_args(parser.parse_args(["run", "--timed-output"])).timed_output is True
    assert config_from_args(parser.parse_args(["run", "--no-timed-output"])).timed_output is False
