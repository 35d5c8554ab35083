"""An operation's inputs as torch tensors (computed or constant) or Python attribute values."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch

_DTYPES = {
    "fp16": torch.float16,
    "fp32": torch.float32,
    "fp64": torch.float64,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
    "uint16": torch.int32,
    "uint32": torch.int64,
}


_SHADOW = {"float32": False}  # see float32_shadow


@contextmanager
def float32_shadow() -> Iterator[None]:
    """Evaluate a float16 program as if every float16 were float32: the same ops, the same
    (float16-rounded) weights, float32 arithmetic. Comparing the two runs op by op shows where
    float16 loses the result (``mil.explain``)."""
    previous = _SHADOW["float32"]
    _SHADOW["float32"] = True
    try:
        yield
    finally:
        _SHADOW["float32"] = previous


def dtype_named(name: str) -> torch.dtype:
    """The torch dtype of a MIL dtype name ("fp16"), float32 for float16 in a shadow run."""
    dtype = _DTYPES[name]
    return torch.float32 if _SHADOW["float32"] and dtype == torch.float16 else dtype


def torch_dtype(mil_dtype: Any) -> torch.dtype:
    from coremltools.converters.mil.mil import types

    return dtype_named(types.builtin_to_string(mil_dtype))


def constant(var: Any) -> Any:
    """A constant var's value as a tensor in the var's own dtype (strings and scalars stay Python)."""
    value = var.val
    if isinstance(value, (str, bytes)):
        return value
    array = np.asarray(value)
    if array.dtype.kind in ("U", "S", "O"):
        return value
    try:
        dtype = torch_dtype(var.dtype)
    except (KeyError, AttributeError, TypeError):
        dtype = None
    tensor = torch.from_numpy(np.array(array))
    return tensor.to(dtype) if dtype is not None else tensor


class Args:
    def __init__(self, op: Any, env: dict[str, Any]) -> None:
        self.op = op
        self.env = env

    def _var(self, name: str) -> Any:
        return self.op.inputs.get(name)

    def _resolve(self, var: Any) -> Any:
        if var.name in self.env:
            return self.env[var.name]
        if var.val is not None:
            return constant(var)
        raise KeyError(f"input {var.name!r} of {self.op.op_type} {self.op.name!r} has no value yet")

    def has(self, name: str) -> bool:
        return self._var(name) is not None

    def tensor(self, name: str) -> torch.Tensor:
        return self._resolve(self._var(name))

    def optional(self, name: str) -> torch.Tensor | None:
        var = self._var(name)
        return None if var is None else self._resolve(var)

    def tensors(self, name: str) -> list[torch.Tensor]:
        return [self._resolve(v) for v in self._var(name)]

    def value(self, name: str, default: Any = None) -> Any:
        """A constant attribute as plain Python (lists, numbers, strings, bools)."""
        var = self._var(name)
        if var is None:
            return default
        value = var.val if var.val is not None else self._resolve(var)
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        return value
