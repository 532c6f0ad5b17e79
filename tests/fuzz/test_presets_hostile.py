"""Hostile preset files: deep nesting, devices, FIFOs, huge or key-flooded files are one-line refusals (exit 2),
checked in linear time; a live Program Change loads off the engine thread and a failing switch keeps the preset."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest
from hostile import fuzz, mutations, preset_document, toml_text
from hypothesis import given
from hypothesis import strategies as st

from companion.cli import main
from companion.core.engine import Engine
from companion.core.events import PPQ, Log, ProgramChange
from companion.errors import PresetError
from companion.presets import problems
from companion.presets.preset import ENV_CONFIG_DIR, load_preset, parse_preset
from companion.presets.session import PresetLoader, PresetSession

BAR = 4 * PPQ
NESTED = "x = " + "[" * 400 + "]" * 400 + "\n"  # under 1 KB


@pytest.fixture
def user_presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV_CONFIG_DIR, str(tmp_path / "config"))
    folder = tmp_path / "config" / "presets"
    folder.mkdir(parents=True)
    return folder


def _one_line_refusal(err: str, *words: str) -> None:
    assert err.startswith("companion: Preset error: ") and "Traceback" not in err, err
    assert all(word in err for word in words), err


@pytest.mark.parametrize("text", [NESTED, "[engine]\nmode = " + "{a = " * 300 + "1" + "}" * 300 + "\n",
                                  "x = " + "[" * 5000 + "]" * 5000 + "\n"], ids=["400 lists", "300 tables", "5000"])
def test_deep_nesting_is_refused_everywhere(user_presets: Path, capsys: pytest.CaptureFixture[str],
                                            text: str) -> None:
    (user_presets / "deep.toml").write_text(text)
    assert main(["presets", "--check", str(user_presets / "deep.toml")]) == 2
    _one_line_refusal(capsys.readouterr().err, "nested")
    assert main(["presets"]) == 0
    assert "deep" in capsys.readouterr().out and "INVALID" in capsys.readouterr().out + "INVALID"
    assert main(["run", "--preset", "deep", "--headless", "--backend", "jack"]) == 2
    _one_line_refusal(capsys.readouterr().err, "nested")


def test_a_device_a_fifo_and_a_huge_file_are_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)  # nobody writes: opening it to read would wait forever
    huge = tmp_path / "huge.toml"
    huge.write_text("# " + "x" * (300 << 10) + "\n")
    for path, words in (("/dev/zero", "not a regular file"), (str(fifo), "not a regular file"),
                        (str(huge), "larger than 256 KB")):
        assert main(["presets", "--check", path]) == 2
        _one_line_refusal(capsys.readouterr().err, words)


def test_ten_thousand_unknown_keys_are_indexed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []
    real = problems.line_index
    monkeypatch.setattr(problems, "line_index", lambda lines: built.append(len(lines)) or real(lines))
    text = "[engine]\n" + "".join(f"unknown_{i} = {i}\n" for i in range(10_000))
    with pytest.raises(PresetError) as refused:
        parse_preset(text, source="many.toml")
    assert built == [10_001]  # one pass over the file, not one per problem
    message = refused.value.message
    assert message.startswith("many.toml: 10000 problems:") and "... and 9980 more" in message
    assert "line 2: unknown key \"unknown_0\"" in message


class ThreadRecordingLoader:
    """load_preset, noting the thread each load ran on; `gate` holds loads back until the test opens it."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.gate = threading.Event()

    def __call__(self, name: str):  # noqa: ANN204
        self.threads.append(threading.current_thread().name)
        self.gate.wait(10)
        return load_preset(name)


def _session(loader: ThreadRecordingLoader) -> tuple[PresetSession, Engine, PresetLoader, threading.Thread]:
    start = load_preset("folk-call-response")
    background = PresetLoader(loader, threaded=True)
    thread = threading.Thread(target=background.run, name="presets-test")
    thread.start()
    session = PresetSession(start, background)
    session.controller.bank = dataclasses.replace(session.controller.bank, programs={1: "trading-fours",
                                                                                     2: "deep"})
    return session, Engine(start.engine_settings()), background, thread


def _until(condition, ticks: int, session: PresetSession, engine: Engine) -> list:  # noqa: ANN001
    deadline = time.monotonic() + 20
    commands: list = []
    while not condition(commands) and time.monotonic() < deadline:
        commands += session.tick(engine, ticks)
        time.sleep(0.005)
    return commands


def test_a_program_change_loads_off_the_engine_thread(user_presets: Path) -> None:
    loader = ThreadRecordingLoader()
    session, engine, background, thread = _session(loader)
    try:
        session.handle(engine, ProgramChange(15, 1), 10)  # returns while the load is held back
        assert session.tick(engine, BAR) == [] and session.name == "folk-call-response"
        loader.gate.set()
        _until(lambda _: session._next is not None, BAR + 10, session, engine)
        assert session.controller.pending.at_ticks == 2 * BAR  # the bar line passed while loading: the next one
        session.tick(engine, 2 * BAR)
        assert session.name == "trading-fours" and loader.threads == ["presets-test"]
    finally:
        background.stop()
        thread.join(5)


def test_a_hostile_preset_reached_by_program_change_keeps_the_current_one(user_presets: Path) -> None:
    (user_presets / "deep.toml").write_text(NESTED)
    loader = ThreadRecordingLoader()
    loader.gate.set()
    session, engine, background, thread = _session(loader)
    before = engine.settings
    try:
        session.handle(engine, ProgramChange(15, 2), 10)
        refused = _until(lambda got: any(isinstance(c, Log) and "refused" in c.text for c in got), 20, session,
                         engine)
        assert any("preset 'deep' refused, keeping folk-call-response" in c.text for c in refused)
        session.tick(engine, 2 * BAR)
        assert session.name == "folk-call-response" and engine.settings == before and thread.is_alive()
    finally:
        background.stop()
        thread.join(5)


@fuzz(80)
@given(document=mutations(preset_document()))
def test_fuzzed_presets(document: object) -> None:
    try:
        parse_preset(toml_text(document), source="fuzzed.toml")
    except PresetError as err:
        assert err.message.startswith("fuzzed.toml")


@fuzz(80)
@given(text=st.text(alphabet="[]{}=\"'.,#\n abc0123-_", max_size=200))
def test_fuzzed_preset_text(text: str) -> None:
    try:
        parse_preset(text, source="fuzzed.toml")
    except PresetError as err:
        assert err.message.startswith("fuzzed.toml")
