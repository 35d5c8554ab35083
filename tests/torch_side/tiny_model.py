"""The small model both weights-only patch tests convert (imported after torch is known to be there)."""

from __future__ import annotations

import torch

IDS = torch.tensor([[1, 5, 7, 30]])


class Tiny(torch.nn.Module):
    """Linears (delegated by XNNPACK; folded into transposed initializers by the ONNX
    optimizer), layer norms whose weights start equal (ones: stored once by both), an
    embedding (not delegated), and a scalar literal (lifted into a constant by lowering)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(32, 16)
        self.first = torch.nn.Linear(16, 16)
        self.norm_a = torch.nn.LayerNorm(16)
        self.norm_b = torch.nn.LayerNorm(16)
        self.last = torch.nn.Linear(16, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        x = self.norm_a(torch.relu(self.first(x)) / 4.0)
        return self.last(self.norm_b(x))


def tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny().eval()
