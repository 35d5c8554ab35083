"""Decompositions that keep a program inside XNNPACK, applied to the exported program before
ExecuTorch lowers it (``targets.executorch.xnnpack_friendly``, on by default).

ExecuTorch's own decompositions turn reflection padding into ``arange``/``abs``/``index``
chains and instance norm into ``_native_batch_norm_legit.no_stats``; XNNPACK takes none of
them, so a generator splits into many partitions with portable kernels between them. Here:

- reflection padding becomes slices of one row or column and a concatenation (both
  delegated), with negative indices so flexible H and W stay static slices;
- instance norm (batch norm on statistics of its own input, batch 1 as instance norm
  reshapes it) becomes mean, subtract, square, mean, add, square root, divide, all
  delegated; other batch sizes keep the mean over the batch dimension too.

Each is exact in real arithmetic; float results differ from the default kernels by rounding
only, and the executorch.verify stage checks the program against PyTorch as always.
"""

from __future__ import annotations

from typing import Any


def _reflect(x: Any, before: int, after: int, dim: int) -> Any:
    import torch

    if not before and not after:
        return x
    head = [x.narrow(dim, i, 1) for i in range(before, 0, -1)]
    tail = [x.narrow(dim, x.shape[dim] - 1 - i, 1) if False else _from_end(x, dim, i) for i in range(1, after + 1)]
    return torch.cat([*head, x, *tail], dim=dim)


def _from_end(x: Any, dim: int, i: int) -> Any:
    """The element ``i`` places before the last one, as a static negative slice."""
    import torch

    return torch.ops.aten.slice.Tensor(x, dim, -1 - i, -i)


def reflection_pad1d(x: Any, padding: list[int]) -> Any:
    left, right = padding
    return _reflect(x, left, right, -1)


def reflection_pad2d(x: Any, padding: list[int]) -> Any:
    left, right, top, bottom = padding
    return _reflect(_reflect(x, left, right, -1), top, bottom, -2)


def batch_norm_own_statistics(x: Any, weight: Any, bias: Any, training: bool, momentum: float, eps: float) -> tuple[Any, Any, Any]:
    """``_native_batch_norm_legit.no_stats``: normalise by the input's own mean and variance
    over every dimension but the channels (dim 1)."""
    import torch

    batch_one = isinstance(x.shape[0], int) and x.shape[0] == 1
    dims = list(range(2, x.dim())) if batch_one else [0, *range(2, x.dim())]
    mean = torch.mean(x, dim=dims, keepdim=True)
    centred = x - mean
    variance = torch.mean(centred * centred, dim=dims, keepdim=True)
    inverse = 1.0 / torch.sqrt(variance + eps)
    out = centred * inverse
    shape = [1, -1] + [1] * (x.dim() - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out, mean.reshape(-1), inverse.reshape(-1)


def decomposition_table() -> dict[Any, Any]:
    """torch.export's default decompositions with these in place of the XNNPACK-hostile ones."""
    import torch
    from torch.export import default_decompositions

    table = default_decompositions()
    aten = torch.ops.aten
    table[aten.reflection_pad1d.default] = reflection_pad1d
    table[aten.reflection_pad2d.default] = reflection_pad2d
    table[aten._native_batch_norm_legit.no_stats] = batch_norm_own_statistics
    return table


def make_friendly(program: Any) -> Any:
    """The exported program with the table applied (a new program; the argument is unchanged)."""
    return program.run_decompositions(decomposition_table())
