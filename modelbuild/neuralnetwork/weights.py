"""``WeightParams`` to tensors: float32 values, float16 bytes or raw float32 bytes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class UnsupportedLayer(Exception):
    """A layer (or a layer option) the executor does not implement: named, never guessed."""


def tensor(weights: Any, shape: list[int] | tuple[int, ...] | None = None) -> torch.Tensor:
    if len(weights.floatValue):
        values = np.asarray(weights.floatValue, dtype=np.float32)
    elif len(weights.float16Value):
        values = np.frombuffer(weights.float16Value, dtype=np.float16).astype(np.float32)
    elif len(weights.rawValue):
        values = np.frombuffer(weights.rawValue, dtype=np.float32).copy()
    elif len(weights.int8RawValue) or weights.HasField("quantization"):
        raise UnsupportedLayer("quantized neuralnetwork weights")
    else:
        values = np.zeros(0, dtype=np.float32)
    result = torch.from_numpy(values.copy())
    return result.reshape(shape) if shape is not None else result


def enum_name(message: Any, field: str) -> str:
    """The name of an enum field's value ("BILINEAR"), as the proto declares it."""
    descriptor = message.DESCRIPTOR.fields_by_name[field]
    return str(descriptor.enum_type.values_by_number[getattr(message, field)].name)
