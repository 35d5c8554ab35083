"""A small MLP with CELU activations: coremltools 9.0 has no conversion for aten::celu, so
this model converts only with the plugin in plugins/celu.py (see manifests/smooth.yaml)."""

import torch
from torch import nn


class SmoothMLP(nn.Module):
    def __init__(self, features: int = 16, hidden: int = 64, classes: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, hidden), nn.CELU(alpha=0.5), nn.Linear(hidden, hidden), nn.CELU(alpha=0.5))
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def build() -> nn.Module:
    torch.manual_seed(7)
    return SmoothMLP()
