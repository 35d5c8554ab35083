"""A tiny model for the bad-input corpus: every case is wrong somewhere else."""

import torch


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x):
        return {"out": self.linear(x)}


def build():
    return Tiny()


def explode():
    raise RuntimeError("the factory could not find its config")
