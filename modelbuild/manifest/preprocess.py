"""Image preprocessing as Core ML expresses it: ``pixel * scale + bias[c]``.

ImageType has one scale for all channels. ImageNet-style normalisation divides each channel
by its own std, which one scale cannot say; we then use scale 1/255 and bias -mean[c], and
fold the exact per-channel factor 1/std[c] into the captured model, so the package computes
exactly ``(pixel/255 - mean[c]) / std[c]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ImagePreprocessing:
    scale: float
    bias: tuple[float, ...]
    channel_factors: tuple[float, ...] | None  # folded into the model when not None


def image_preprocessing(inp: dict[str, Any]) -> ImagePreprocessing:
    channels = 1 if inp.get("color_layout") == "GRAYSCALE" else 3
    if "normalize" in inp:
        mean = _per_channel(inp["normalize"]["mean"], channels)
        std = _per_channel(inp["normalize"]["std"], channels)
        if len(set(std)) == 1:
            return ImagePreprocessing(1.0 / (255.0 * std[0]), tuple(-m / std[0] for m in mean), None)
        return ImagePreprocessing(1.0 / 255.0, tuple(-m for m in mean), tuple(1.0 / s for s in std))
    return ImagePreprocessing(float(inp.get("scale", 1.0)), _per_channel(inp.get("bias", 0.0), channels), None)


def _per_channel(value: Any, channels: int) -> tuple[float, ...]:
    values = [float(v) for v in value] if isinstance(value, list) else [float(value)]
    return tuple(values * channels) if len(values) == 1 else tuple(values)
