"""A fully convolutional image-to-image generator (style-transfer shape) with reflection padding.

It has no fixed spatial size anywhere, so it accepts any H and W.
"""

import torch
from torch import nn


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TinyGenerator(nn.Module):
    def __init__(self, width: int = 16, blocks: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(3, width, 7),
            nn.ReLU(),
            *[_Residual(width) for _ in range(blocks)],
            nn.ReflectionPad2d(3),
            nn.Conv2d(width, 3, 7),
            nn.Tanh(),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # Back to 0..255 pixels so the output can be a Core ML image.
        return (self.net(image) + 1.0) * 127.5


def build(width: int = 16, blocks: int = 2) -> nn.Module:
    return TinyGenerator(width=width, blocks=blocks)
