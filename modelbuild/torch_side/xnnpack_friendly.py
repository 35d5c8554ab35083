"""Decompositions that keep a program inside XNNPACK, applied to the exported program before
ExecuTorch lowers it (``targets.executorch.xnnpack_friendly``, on by default).

ExecuTorch's own decompositions turn reflection padding into ``arange``/``abs``/``index``
chains and instance norm into ``_native_batch_norm_legit.no_stats``; XNNPACK takes none of
them, so a generator splits into many partitions with portable kernels between them. Here:

- reflection padding becomes slices of one row or column and a concatenation (both
  delegated), with negative indices so flexible H and W stay static slices;
- instance norm (batch norm on statistics of its own input, batch 1 as instance norm
  reshapes it) becomes mean, subtract, square, mean, add, square root, divide, all
  delegated; other batch sizes keep the mean over the batch dimension too;
- nearest upsampling by whole factors becomes a broadcast multiplication by ones between
  reshapes (XNNPACK has no nearest upsampling, and reshapes at most one flexible dimension);
  at flexible sizes the rows are repeated by a row selection that writes its output directly.

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
    tail = [_from_end(x, dim, i) for i in range(1, after + 1)]
    return torch.cat([*head, x, *tail], dim=dim)


def _from_end(x: Any, dim: int, i: int) -> Any:
    """The element ``i`` places before the last one, as a static negative slice."""
    import torch

    return torch.ops.aten.slice.Tensor(x, dim, -1 - i, -i)


def reflection_pad1d(x: Any, padding: list[int]) -> Any:
    if _crops(padding):
        return NotImplemented
    left, right = padding
    return _reflect(x, left, right, -1)


def reflection_pad2d(x: Any, padding: list[int]) -> Any:
    if _crops(padding):
        return NotImplemented
    left, right, top, bottom = padding
    return _reflect(_reflect(x, left, right, -1), top, bottom, -2)


def _crops(padding: list[int]) -> bool:
    """A negative pad crops (torch takes ``F.pad(x, (-1, -1), mode="reflect")``). The
    one-row slices above only add rows, so such a pad keeps torch's own decomposition: a
    rewrite that silently did not crop once shipped a program whose border pixels leaked into
    a max, and the seeded samples did not show it."""
    return any(not isinstance(p, int) or p < 0 for p in padding)


def batch_norm_own_statistics(x: Any, weight: Any, bias: Any, training: bool, momentum: float, eps: float) -> tuple[Any, Any, Any]:
    """``_native_batch_norm_legit.no_stats``: normalise by the input's own mean and variance
    over every dimension but the channels (dim 1)."""
    import torch

    batch_one = isinstance(x.shape[0], int) and x.shape[0] == 1
    dims = list(range(2, x.dim())) if batch_one else [0, *range(2, x.dim())]
    mean = torch.mean(x, dim=dims, keepdim=True)
    centred = x - mean
    variance = torch.mean(centred * centred, dim=dims, keepdim=True)
    out = centred / torch.sqrt(variance + eps)  # a division: XNNPACK takes it, not a reciprocal
    shape = [1, -1] + [1] * (x.dim() - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out, mean.reshape(-1), torch.rsqrt(variance + eps).reshape(-1)  # unused by instance norm: removed as dead code


def instance_norm(
    x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any, use_input_stats: bool, momentum: float, eps: float, cudnn_enabled: bool
) -> Any:
    """``aten.instance_norm`` straight on (N, C, spatial...): torch's own decomposition
    reshapes to (1, N*C, ...) and repeats the weight, which XNNPACK does not take."""
    import torch

    dims = list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    if use_input_stats:
        mean = torch.mean(x, dim=dims, keepdim=True)
        centred = x - mean
        out = centred / torch.sqrt(torch.mean(centred * centred, dim=dims, keepdim=True) + eps)
    else:
        out = (x - running_mean.reshape(shape)) / torch.sqrt(running_var.reshape(shape) + eps)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def upsample_nearest2d(x: Any, output_size: Any, scale_factors: Any) -> Any:
    """Nearest upsampling by whole factors: each pixel repeated along the width by a
    multiplication by ones between reshapes, then each row repeated, by a second multiplication
    at fixed sizes and by ``index_select`` at flexible ones. Exact: x * 1 is x for every float,
    -0 and NaN included, and a selected row is a copied row. Any other factor keeps torch's own
    decomposition.

    XNNPACK has no nearest upsampling and takes the broadcast multiplications. At fixed sizes
    the reshapes are delegated too, so the whole upsampling stays inside the partition of the
    layers around it. At flexible sizes the reshapes stay outside as views (XNNPACK reshapes at
    most one flexible dimension, and its unsqueeze of two fails to lower), and a view that is
    the program's output is copied (ExecuTorch never makes an output a view); ExecuTorch's
    portable ``index_select`` instead copies each selected row whole, straight into its output.
    Measured, one thread, the program's time: the segmenter at flexible 256x256 0.69 ms against
    0.76 ms with two multiplications (eager 1.18-1.26 ms), at 512x512 2.65 against 2.97 ms; an
    upsampling between convolutions, flexible, 12.0 against 12.3 ms, but at a fixed size
    12.4 against 11.7 ms, where the second multiplication stays inside the partition. ExecuTorch's
    portable nearest kernel made the segmenter 0.86x eager."""
    import torch

    factors = _whole_factors(x, output_size, scale_factors)
    if factors is None:
        return NotImplemented
    fh, fw = factors
    n, c, h, w = x.shape
    if fw > 1:
        x = (x.reshape(n, c, h, w, 1) * x.new_ones(fw)).reshape(n, c, h, w * fw)
    if fh > 1 and isinstance(h, int) and isinstance(w, int):
        x = (x.reshape(n, c, h, 1, w * fw) * x.new_ones(fh, 1)).reshape(n, c, h * fh, w * fw)
    elif fh > 1:
        x = x.index_select(2, torch.arange(h * fh, device=x.device) // fh)
    return x


def _whole_factors(x: Any, output_size: Any, scale_factors: Any) -> tuple[int, int] | None:
    if scale_factors is not None:
        fh, fw = scale_factors
        return (int(fh), int(fw)) if float(fh).is_integer() and float(fw).is_integer() and fh * fw <= 64 else None
    if output_size is not None and all(isinstance(d, int) for d in (*x.shape[-2:], *output_size)):
        (h, w), (oh, ow) = x.shape[-2:], output_size
        return (oh // h, ow // w) if oh % h == 0 and ow % w == 0 and (oh // h) * (ow // w) <= 64 else None
    return None


# switch name -> the aten operators it decomposes, and how
DECOMPOSITIONS: dict[str, list[tuple[str, Any]]] = {
    "reflection_pad": [("reflection_pad1d.default", reflection_pad1d), ("reflection_pad2d.default", reflection_pad2d)],
    "instance_norm": [("instance_norm.default", instance_norm), ("_native_batch_norm_legit.no_stats", batch_norm_own_statistics)],
    "nearest_upsample": [("upsample_nearest2d.vec", upsample_nearest2d)],
}


def decomposition_table(switches: dict[str, bool]) -> dict[Any, Any]:
    """torch.export's default decompositions with the switched-on ones in place of the
    XNNPACK-hostile defaults."""
    import torch
    from torch.export import default_decompositions

    table = default_decompositions()
    for name, entries in DECOMPOSITIONS.items():
        if switches.get(name, True):
            for op, function in entries:
                packet, _, overload = op.partition(".")
                table[getattr(getattr(torch.ops.aten, packet), overload)] = function
    return table


def make_friendly(program: Any, switches: dict[str, bool]) -> Any:
    """The exported program with the table applied (a new program; the argument is unchanged)."""
    return program.run_decompositions(decomposition_table(switches))
