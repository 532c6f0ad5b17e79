"""`companion train drums ...` and `companion eval drums ...`: the drum GAN's entry points."""

from models.drums.evaluate import eval_main
from models.drums.train import train_main

__all__ = ["eval_main", "train_main"]
