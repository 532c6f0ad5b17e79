"""`companion generate continue TAKE.mid --replay TAKE.json`: a damaged or crafted sidecar is one line and exit 2
(never a traceback, never unbounded work), whatever value is put anywhere in it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hostile import fuzz, mutations, replaced, take_sidecar
from hypothesis import given

from companion.cli import main
from companion.core.events import Note
from companion.files.midifile import write_take

ANSWER = ("answers", 0)


def _replay(folder: Path, sidecar: dict | bytes | None, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    take = folder / "take.mid"
    if not take.exists():
        write_take(take, [("player", [Note(60, 90, 0, 480)]), ("companion", [Note(64, 80, 1920, 480)])], 120.0)
    if sidecar is not None:
        data = sidecar if isinstance(sidecar, bytes) else json.dumps(sidecar).encode()
        (folder / "take.json").write_bytes(data)
    code = main(["generate", "continue", str(take), "--replay", str(folder / "take.json"),
                 "-o", str(folder / "out.mid")])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        assert err.startswith("companion: ") and not (folder / "out.mid").exists(), err
    assert {p.name for p in folder.iterdir()} <= {"take.mid", "take.json", "out.mid"}
    return code, err


def test_the_recorded_sidecar_replays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _replay(tmp_path, take_sidecar(), capsys)[0] == 0


CRAFTED = {
    "an answer 10^9 ticks long": ((*ANSWER, "end_ticks"), 10**9, "answers[0].end_ticks"),
    "3,000 answers": (("answers",), [take_sidecar()["answers"][0]] * 3000, "holds 3000 items"),
    "a pitch of 300": ((*ANSWER, "phrase", "notes", 0, 0), 300, "answers[0].phrase.notes[0] pitch"),
    "a bar of 0 ticks": ((*ANSWER, "phrase", "bar_ticks"), 0, "bar_ticks = 0"),
    "a negative start": ((*ANSWER, "start_ticks"), -1920, "answers[0].start_ticks"),
    "a key of 99": ((*ANSWER, "key"), [99, "major"], "answers[0].key"),
    "a key as text": ((*ANSWER, "key"), "C major", "answers[0].key"),
    "a temperature as text": ((*ANSWER, "settings", "temperature"), "hot", "settings.temperature"),
    "a NaN temperature": ((*ANSWER, "settings", "temperature"), float("nan"), "settings.temperature"),
    "settings as a list": ((*ANSWER, "settings"), [1, 2], "answers[0].settings is not a table"),
    "a seed of 2^80": ((*ANSWER, "seed"), 2**80, "answers[0].seed"),
    "a note of three numbers": ((*ANSWER, "phrase", "notes", 1), [60, 90, 0], "notes[1] is not"),
    "a phrase that is a number": ((*ANSWER, "phrase"), 7, "answers[0].phrase is not a table"),
    "a checkpoint that is a number": (("model", "checkpoint"), 5, "model.checkpoint"),
    "a morph partner of bad notes": ((*ANSWER, "settings", "vae"), {"op": "morph", "other": [[1, 2]]}, "vae.other"),
    "a version as text": (("version",), "1", "version"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_sidecar_is_refused_with_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     case: str) -> None:
    path, value, words = CRAFTED[case]
    code, err = _replay(tmp_path, replaced(take_sidecar(), path, value), capsys)
    assert code == 2 and err.count("\n") == 1 and words in err, err


@pytest.mark.parametrize("content", [b"[" * 100_000 + b"]" * 100_000, b'{"format": "companion-take", "x": '
                                     + b"[" * 50 + b"]" * 50 + b"}", b" " * (9 << 20)],
                         ids=["100,000 lists deep", "50 lists deep", "9 MB"])
def test_deep_or_huge_json_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    code, err = _replay(tmp_path, content, capsys)
    assert code == 2 and err.count("\n") == 1


def test_a_fifo_or_a_device_is_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "take.json")  # no writer: opening it for reading would wait forever
    code, err = _replay(tmp_path, None, capsys)
    assert code == 2 and "not a regular file" in err
    code = main(["generate", "continue", str(tmp_path / "take.mid"), "--replay", "/dev/zero", "-o",
                 str(tmp_path / "out.mid")])
    assert code == 2 and "not a regular file" in capsys.readouterr().err


@fuzz(60)
@given(sidecar=mutations(take_sidecar()))
def test_fuzzed_sidecars(sidecar: object, capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        _replay(Path(folder), sidecar, capsys)  # type: ignore[arg-type]
