"""Seeded example inputs as torch tensors: the same generator verification uses, so images
start as uint8 pixels and go through the declared scale and bias."""

from __future__ import annotations

from typing import Any

from modelbuild.checks.cases import generate, model_feeds
from modelbuild.manifest.shapes import shape_at


def make_inputs(inputs: list[dict[str, Any]], which: str = "default", seed: int = 0) -> list[Any]:
    import torch

    raw = generate(inputs, {i["name"]: shape_at(i, which) for i in inputs}, seed)
    return [torch.from_numpy(x) for x in model_feeds(inputs, raw)]
