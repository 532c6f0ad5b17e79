"""Presets: every shipped one loads; syntax, unknown keys, ranges and types each give a message that helps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from companion.core.control import CONTROLS
from companion.core.engine import EngineSettings, available_modes
from companion.errors import PresetError
from companion.presets.preset import (
    DEFAULT_PRESET,
    ENV_CONFIG_DIR,
    list_presets,
    load_preset,
    load_preset_file,
    parse_preset,
    presets_command,
    shipped_presets_dir,
)
from companion.presets.schema import SCHEMA
from companion.presets.writer import dump_preset, preset_from_settings, save_user_preset

SHIPPED = sorted(shipped_presets_dir().glob("*.toml"))


@pytest.fixture(autouse=True)
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty user config folder."""
    monkeypatch.setenv(ENV_CONFIG_DIR, str(tmp_path / "config"))
    return tmp_path / "config" / "presets"


def _error(text: str) -> str:
    with pytest.raises(PresetError) as info:
        parse_preset(text, source="song.toml", preset_id="song")
    return info.value.message


def test_at_least_eight_shipped_presets_with_distinct_modes() -> None:
    assert len(SHIPPED) >= 8
    modes = {load_preset_file(p).mode for p in SHIPPED}
    assert {"call_response", "harmonize", "duet", "variation", "generate"} <= modes


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_preset_loads(path: Path) -> None:
    preset = load_preset(path.stem)
    assert preset.origin == "shipped" and preset.path == path
    assert preset.description and preset.name
    if preset.mode in available_modes():
        settings = preset.engine_settings()
        assert isinstance(settings, EngineSettings) and settings.mode == preset.mode
    else:
        with pytest.raises(PresetError, match="not available in this version"):
            preset.engine_settings()
    # The round trip through our own writer keeps every value.
    again = parse_preset(dump_preset(preset), preset_id=preset.id)
    assert (dict(again.engine), dict(again.extras), again.clock, again.cc, again.bank) == \
        (dict(preset.engine), dict(preset.extras), preset.clock, preset.cc, preset.bank)


def test_values_are_mapped_onto_engine_settings_and_extras() -> None:
    preset = parse_preset("""
[engine]
mode = "call_response"
input_channel = 3
output_channel = 2
max_bars = "none"
trigger_note = "C2"
meter = "6/8"
[sampling]
temperature = 0.7
pitch_range = ["C3", 84]
density = "auto"
[midi]
thru = true
quantize = "1/16"
[cc]
21 = { control = "temperature", min = 0.5, max = 1.5 }
[bank]
channel = 1
3 = "duet"
""", preset_id="song")
    settings = preset.engine_settings()
    assert (settings.input_channel, settings.output_channel, settings.max_bars) == (2, 1, None)
    assert (settings.trigger_note, settings.beats_per_bar, settings.beat_unit) == (36, 6, 8)
    assert settings.temperature == 0.7 and settings.thru is True
    assert preset.extras["pitch_range"] == (48, 84) and preset.extras["density"] is None
    assert preset.extras["quantize_ticks"] == 120
    assert preset.cc[0].cc == 21 and preset.cc[0].value(127) == 1.5
    assert preset.bank is not None and preset.bank.channel == 0 and preset.bank.programs == {3: "duet"}
    assert preset.request_settings()["preset"] == "song"


def test_defaults_match_engine_defaults_where_the_engine_has_them() -> None:
    preset = parse_preset("", preset_id="empty")
    defaults = EngineSettings()
    settings = preset.engine_settings()
    for name in ("output_channel", "input_channel", "silence_beats", "max_bars", "response_bars", "key_lock",
                 "temperature", "seed", "beats_per_bar", "lead_ticks", "thru"):
        assert getattr(settings, name) == getattr(defaults, name), name


def test_malformed_toml_names_file_line_and_shows_it() -> None:
    message = _error('name = "x"\n[engine]\nmode = "call_response\n')
    assert message.startswith("song.toml, line 3")
    assert 'mode = "call_response' in message


def test_key_written_twice_is_explained() -> None:
    message = _error('[engine]\nresponse_bars = 2\nresponse_bars = 4\n')
    assert "line 3" in message and "written twice" in message


def test_unknown_key_suggests_the_right_one_with_its_line() -> None:
    message = _error("[sampling]\ntemperature = 1.0\ntemprature = 0.5\n")
    assert 'line 3: unknown key "temprature" in [sampling]; did you mean "temperature"?' in message


def test_key_in_the_wrong_table_says_where_it_belongs() -> None:
    message = _error("[engine]\nthru = true\n")
    assert "line 2" in message and "belongs in [midi]" in message


def test_unknown_table_suggests_the_right_one() -> None:
    assert 'did you mean "sampling"?' in _error("[samplng]\ntemperature = 1.0\n")


def test_value_out_of_range_names_key_value_and_allowed_range() -> None:
    message = _error("[sampling]\n\ntemperature = 9.0\n")
    assert "line 3: [sampling] temperature = 9.0 is out of range" in message
    assert "above 0 up to 5" in message


def test_wrong_type_names_the_type_given_and_expected() -> None:
    message = _error('[engine]\nresponse_bars = "two"\n')
    assert '[engine] response_bars = "two" is text; allowed: a whole number 1..64' in message


def test_bad_choice_suggests_the_closest_value() -> None:
    message = _error('[harmony]\nstyle = "chorales"\n')
    assert 'did you mean "chorale"?' in message and '"block"' in message


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    message = _error('[engine]\noutput_channel = 0\n[midi]\nthru = "yes"\n[clock]\nbpm = 1000\n')
    assert "3 problems" in message
    assert "output_channel = 0" in message and 'thru = "yes"' in message and "bpm = 1000" in message


@pytest.mark.parametrize(("table", "needle"), [
    ('[cc]\n64 = "temperature"\n', "sustain pedal"),
    ('[cc]\n21 = "temprature"\n', 'did you mean "temperature"?'),
    ('[cc]\n21 = { control = "temperature", max = 9.0 }\n', "out of range"),
    ('[cc]\nfader = "temperature"\n', "not a controller number"),
    ('[bank]\n200 = "duet"\n', "not a program number"),
])
def test_cc_and_bank_mistakes(table: str, needle: str) -> None:
    assert needle in _error(table)


@pytest.mark.parametrize("name", sorted(n for n, spec in CONTROLS.items() if spec.kind in ("int", "float")))
def test_every_ranged_control_takes_a_narrower_range_in_a_cc_mapping(name: str) -> None:
    spec = CONTROLS[name]
    low, high = spec.low, spec.high
    if spec.kind == "int":
        low, high = int(low) + 1, int(high) - 1
    preset = parse_preset(f'[cc]\n21 = {{ control = "{name}", min = {low}, max = {high} }}\n', source="song.toml",
                          preset_id="song")
    [mapping] = preset.cc
    assert (mapping.control, mapping.low, mapping.high) == (name, low, high)


def test_missing_checkpoint_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[model]\ncheckpoint = "models/nowhere.pt"\n')
    with pytest.raises(PresetError, match="does not exist"):
        load_preset_file(path)


def test_user_preset_overrides_shipped_one_of_the_same_name(user_dir: Path) -> None:
    user_dir.mkdir(parents=True)
    (user_dir / f"{DEFAULT_PRESET}.toml").write_text('description = "mine"\n[sampling]\ntemperature = 0.4\n')
    preset = load_preset(DEFAULT_PRESET)
    assert preset.origin == "user" and preset.description == "mine" and preset.engine["temperature"] == 0.4
    info = {i.id: i for i in list_presets()}[DEFAULT_PRESET]
    assert info.origin == "user" and info.overrides_shipped


def test_unknown_preset_name_suggests_one() -> None:
    with pytest.raises(PresetError, match='did you mean "folk-call-response"'):
        load_preset("folk-call-respons")


def test_save_user_preset_writes_a_valid_file_with_the_live_state(user_dir: Path) -> None:
    base = load_preset(DEFAULT_PRESET)
    live = base.engine_settings().replace(temperature=1.3, response_bars=3)
    path = save_user_preset(preset_from_settings(base, live, {"density": 6.0}, name="My set"), "My Set!")
    assert path == user_dir / "my-set.toml"
    saved = load_preset("my-set")
    assert saved.origin == "user" and saved.name == "My set"
    assert saved.engine["temperature"] == 1.3 and saved.engine["response_bars"] == 3
    assert saved.extras["density"] == 6.0 and saved.cc == base.cc
    assert not list(user_dir.glob(".*.tmp"))


def test_presets_command_lists_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert presets_command(None) == 0
    listing = capsys.readouterr().out
    assert all(p.stem in listing for p in SHIPPED)
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text('description = "ok"\n')
    bad.write_text("[sampling]\ntemperature = -1\n")
    assert presets_command([str(good)]) == 0
    assert presets_command([str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: 1 problem" in err and "line 2" in err
    assert presets_command([str(tmp_path / "missing.toml")]) == 2


def test_check_catches_a_bank_naming_a_preset_that_does_not_exist(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "set.toml"
    path.write_text('[bank]\n0 = "duets"\n')
    assert presets_command([str(path)]) == 2
    assert 'did you mean "duet"?' in capsys.readouterr().err


def test_schema_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "PRESETS.md").read_text()
    for table, fields in SCHEMA.items():
        assert f"[{table}]" in doc
        for key in fields:
            assert f"`{key}`" in doc, f"[{table}] {key} missing from docs/PRESETS.md"


def test_save_preset_takes_the_uis_settings_dict(user_dir: Path) -> None:
    from companion.presets.writer import save_settings_as_preset as save_preset

    live = {**dataclasses.asdict(EngineSettings(output_channel=2, temperature=0.6)),
            "extras": {"distance": 0.7, "preset": "duet"}, "density": 3.0}
    path = save_preset("Gig 1", live, "for the gig")
    saved = load_preset(path.stem)
    assert path.parent == user_dir and saved.description == "for the gig"
    assert saved.engine["output_channel"] == 2 and saved.engine["temperature"] == 0.6
    assert saved.extras["distance"] == 0.7 and saved.extras["density"] == 3.0
    with pytest.raises(PresetError, match="not saved"):
        save_preset("bad", {"temperature": -1.0})


def test_a_key_for_the_key_lock_is_read_and_a_bad_one_is_named() -> None:
    preset = parse_preset('[engine]\nkey = "f# Dorian"\n', preset_id="k")
    assert preset.engine_settings().key == "F# dorian"
    assert parse_preset('[engine]\nkey = "auto"\n', preset_id="k").engine_settings().key is None
    message = _error('[engine]\nkey = "H major"\n')
    assert '[engine] key = "H major" is not a key' in message and '"D minor"' in message
