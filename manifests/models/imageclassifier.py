"""A ResNet image classifier from Hugging Face transformers, built from a small config (random
initialisation, then the shipped weights): no download.

Its pooling is adaptive, so the manifest leaves height and width flexible, and every target
is verified at the smallest, default and largest size.
"""

from __future__ import annotations

from typing import Any


def build(num_labels: int = 5, width: int = 16, depths: tuple[int, ...] = (1, 1, 1)) -> Any:
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        num_channels=3,
        embedding_size=width,
        hidden_sizes=[width * 2**i for i in range(len(depths))],
        depths=list(depths),
        layer_type="basic",
        hidden_act="relu",
        num_labels=num_labels,
    )
    return ResNetForImageClassification(config).eval()
