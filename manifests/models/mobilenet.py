"""A MobileNet-style classifier: depthwise-separable conv/batch-norm/ReLU blocks and a wide
linear head. Big enough (0.8 M parameters) that compression and int8 show real effects."""

import torch
from torch import nn


def _separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class MobileNet(nn.Module):
    def __init__(self, num_classes: int = 1000, widths: tuple[int, ...] = (32, 64, 128, 256, 256, 512)) -> None:
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        blocks = [_separable(cin, cout, 2 if cout != cin else 1) for cin, cout in zip(widths, widths[1:])]
        self.features = nn.Sequential(stem, *blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(image)).flatten(1))


def build(num_classes: int = 1000) -> nn.Module:
    return MobileNet(num_classes=num_classes)
