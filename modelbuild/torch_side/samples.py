"""Seeded example inputs. Images start as uint8 pixels and go through the declared scale and
bias, so what the model sees in capture is what Core ML will feed it."""

from __future__ import annotations

from typing import Any

from modelbuild.manifest.preprocess import image_preprocessing
from modelbuild.manifest.shapes import shape_at

DTYPES = {"float32": "float32", "float16": "float16", "int32": "int32", "int64": "int64", "bool": "bool"}


def make_inputs(inputs: list[dict[str, Any]], which: str = "default", seed: int = 0) -> list[Any]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for inp in inputs:
        shape = shape_at(inp, which)
        if inp["kind"] == "image":
            pixels = torch.randint(0, 256, tuple(shape), generator=generator).float()
            pre = image_preprocessing(inp)
            bias = torch.tensor(pre.bias, dtype=torch.float32).view(1, -1, 1, 1)
            tensors.append(pixels * pre.scale + bias)
            continue
        dtype = getattr(torch, DTYPES[inp["dtype"]])
        if dtype.is_floating_point:
            low, high = inp.get("range", [-1.0, 1.0])
            value = torch.rand(tuple(shape), generator=generator) * (high - low) + low
            tensors.append(value.to(dtype))
        elif dtype == torch.bool:
            tensors.append(torch.randint(0, 2, tuple(shape), generator=generator).bool())
        else:
            low, high = inp.get("range", [0, 100])
            tensors.append(torch.randint(int(low), int(high), tuple(shape), generator=generator, dtype=dtype))
    return tensors
