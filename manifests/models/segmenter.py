"""A small encoder/decoder segmenter that returns a dict, like torchvision's models.

The decoder upsamples by fixed factors, so the output is as large as the input for any
input size divisible by 4.
"""

import torch
from torch import nn


class TinySegmenter(nn.Module):
    def __init__(self, num_classes: int = 4, width: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Conv2d(width * 2, num_classes, 1)
        self.aux = nn.Conv2d(width * 2, num_classes, 1)
        self.upsample = nn.Upsample(scale_factor=4, mode="nearest")

    def forward(self, image: torch.Tensor) -> dict:
        features = self.encoder(image)
        return {
            "out": self.upsample(self.classifier(features)),
            "aux": self.aux(features),
        }


def build(num_classes: int = 4, width: int = 16) -> nn.Module:
    return TinySegmenter(num_classes=num_classes, width=width)
