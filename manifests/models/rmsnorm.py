"""A feature block whose activations reach the hundreds, then an RMS norm: the squares it
averages pass float16's largest value (65504), so a float16 Core ML program computes
infinities where PyTorch computes ordinary numbers (see manifests/rmsnorm.yaml)."""

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        power = (x * x).mean(dim=-1, keepdim=True)
        return x * torch.rsqrt(power + self.eps) * self.weight


class LoudBlock(nn.Module):
    def __init__(self, features: int = 32, hidden: int = 64, classes: int = 8, gain: float = 512.0) -> None:
        super().__init__()
        self.gain = gain
        self.proj = nn.Linear(features, hidden)
        self.norm = RMSNorm(hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.proj(x) * self.gain))


def build() -> nn.Module:
    torch.manual_seed(11)
    return LoudBlock()
