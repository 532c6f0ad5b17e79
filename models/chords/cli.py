"""`companion train harmony` and `companion eval harmony`: the chord model's CLI entry points."""

from __future__ import annotations


def train_main(argv: list[str]) -> int:
    from models.chords.train import train_main as run

    return run(argv)


def eval_main(argv: list[str]) -> int:
    from models.chords.evaluate import eval_main as run

    return run(argv)
