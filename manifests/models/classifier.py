"""A small image classifier: conv/batch-norm/ReLU blocks, global pooling, a linear head."""

import torch
from torch import nn


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyClassifier(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(3, width, 2),
            _block(width, width * 2, 2),
            _block(width * 2, width * 4, 2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width * 4, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(image)).flatten(1)
        return torch.softmax(self.head(x), dim=1)


def build(num_classes: int = 10, width: int = 16) -> nn.Module:
    return TinyClassifier(num_classes=num_classes, width=width)
