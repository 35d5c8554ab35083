"""Seeded example inputs as torch tensors: the same generator verification uses, so images
start as uint8 pixels and go through the declared scale and bias."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelbuild.checks.cases import generate, model_feeds
from modelbuild.manifest.shapes import shape_at


def make_inputs(inputs: list[dict[str, Any]], which: str = "default", seed: int = 0) -> list[Any]:
    import torch

    raw = generate(inputs, {i["name"]: shape_at(i, which) for i in inputs}, seed)
    return [torch.from_numpy(x) for x in model_feeds(inputs, raw)]


def calibration_inputs(inputs: list[dict[str, Any]], count: int, data: Path | None) -> list[list[Any]]:
    """Samples a quantiser observes: ``validate.data`` first (real data says most about real
    ranges), then seeded samples cycling through the default, min and max shapes."""
    import torch

    from modelbuild.checks.cases import at_default_shapes, load_data_file
    from modelbuild.manifest.shapes import dims

    samples = []
    if data:
        raw = load_data_file(data, inputs)
        flexible = any(d.flexible for i in inputs if "shape" in i for d in dims(i))
        if flexible or at_default_shapes(inputs, raw):
            samples.append([torch.from_numpy(x) for x in model_feeds(inputs, raw)])
    shapes = ("default", "min", "max")
    for seed in range(max(count - len(samples), 0)):
        samples.append(make_inputs(inputs, shapes[seed % 3], seed=1000 + seed))
    return samples
