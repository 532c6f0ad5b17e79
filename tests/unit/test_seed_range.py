"""--seed is range-checked where it is read: a usage error (exit 2, one line), never a traceback later."""

from __future__ import annotations

from pathlib import Path

import pytest
from melody_file import write_melody

from companion.cli import main
from companion.core.settings import EngineSettings

SEED_MAX = 2**31 - 1  # the range the preset schema has always had (companion.core.settings.SEED_MAX)


@pytest.mark.parametrize("seed", [str(2**80), str(SEED_MAX + 1), "-1", "1e5"])
@pytest.mark.parametrize("command", ["generate", "run", "demo"])
def test_a_seed_out_of_range_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: str,
                                              command: str) -> None:
    source = write_melody(tmp_path / "mel.mid")
    argv = {"generate": ["generate", "continue", str(source), "-o", str(tmp_path / "out.mid"), "--model", "markov"],
            "run": ["run", "--headless", "--backend", "jack"],
            "demo": ["demo", "-o", str(tmp_path / "demo.mid")]}[command]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--seed", seed])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--seed" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mel.mid"]


def test_the_largest_seed_works_offline(tmp_path: Path) -> None:
    source = write_melody(tmp_path / "mel.mid")
    assert main(["generate", "continue", str(source), "-o", str(tmp_path / "out.mid"), "--model", "markov",
                 "--seed", str(SEED_MAX)]) == 0


def test_the_engine_refuses_a_seed_torch_cannot_take() -> None:
    with pytest.raises(ValueError, match="seed must be a whole number 0.."):
        EngineSettings(seed=2**80)
