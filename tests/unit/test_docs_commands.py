"""Every `companion ...` command shown in a code block of the docs parses: no flag the CLI would reject."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from companion.cli import parse_args

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "models").rglob("*.md"))]


def _model_parser(command: str, model: str) -> Callable[[], argparse.ArgumentParser] | None:
    """The parser of `companion train|eval MODEL ...`'s own options (they are handed to the model's entry)."""
    from models.chorale import evaluate as harmonizer_eval
    from models.chorale import train as harmonizer_train
    from models.continuation import evaluate
    from models.continuation import train as continuation_train
    from models.vae import train as vae_train

    return {("train", "transformer"): continuation_train._parser, ("eval", "transformer"): evaluate._parser,
            ("train", "harmonizer"): harmonizer_train.build_parser,
            ("eval", "harmonizer"): harmonizer_eval.build_parser, ("train", "vae"): vae_train._parser}.get(
        (command, model))


def doc_commands() -> Iterator[tuple[str, list[str]]]:
    """(where, argv after `companion`) for each command in a fenced code block (`-m companion` too)."""
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"^```[\w-]*\n(.*?)^```", text, re.S | re.M):
            for line in block.replace("\\\n", " ").splitlines():
                for part in re.split(r"&&|;|\|\|", line):
                    try:
                        words = shlex.split(part, comments=True)
                    except ValueError:
                        continue
                    if words[:1] == ["companion"]:
                        yield f"{path.relative_to(ROOT)}: {part.strip()}", words[1:]
                    elif "-m" in words and words[words.index("-m") + 1:][:1] == ["companion"]:
                        yield f"{path.relative_to(ROOT)}: {part.strip()}", words[words.index("-m") + 2:]


COMMANDS = list(doc_commands())


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 20 and any(argv[:2] == ["train", "transformer"] for _, argv in COMMANDS)


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_documented_command_parses(where: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        args = parse_args(argv)
        if args.command in ("train", "eval"):
            make = _model_parser(args.command, args.model)
            if make is not None:
                make().parse_args(args.args)
    except SystemExit as stop:
        if stop.code != 0:  # --help exits 0
            pytest.fail(f"{where}\n  is refused: {capsys.readouterr().err.strip().splitlines()[-1]}")


TORCHRUN_FLAGS = {"--standalone", "--nproc_per_node", "--nnodes", "--node_rank", "--master-addr", "--master-port",
                  "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id"}


def test_every_flag_the_training_guide_names_is_one_train_transformer_takes() -> None:
    from models.continuation.train import _parser

    known = {flag for action in _parser()._actions for flag in action.option_strings} | TORCHRUN_FLAGS
    named = set(re.findall(r"`(--[a-z][a-z0-9-_]*)", (ROOT / "docs" / "TRAINING.md").read_text(encoding="utf-8")))
    assert named - known == set(), "docs/TRAINING.md names flags `companion train transformer` does not take"
