"""Shape, indexing, reduction and sorting ops."""

from __future__ import annotations

from typing import Any, Callable

import torch

from modelbuild.mil.args import Args
from modelbuild.mil.registry import implements


@implements("reshape")
def reshape(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    shape = [int(s) for s in args.tensor("shape").tolist()]
    # MIL: 0 copies the input dimension, -1 is inferred.
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


@implements("transpose")
def transpose(args: Args) -> torch.Tensor:
    return args.tensor("x").permute(args.value("perm"))


@implements("concat")
def concat(args: Args) -> torch.Tensor:
    values = [v.reshape(1) if v.dim() == 0 else v for v in args.tensors("values")]  # MIL concatenates scalars too
    axis = args.value("axis")
    if args.value("interleave", False):
        return torch.stack(values, dim=axis + 1 if axis >= 0 else axis).flatten(axis, axis + 1 if axis >= 0 else axis)
    dtype = values[0].dtype
    return torch.cat([v.to(dtype) for v in values], dim=axis)


@implements("stack")
def stack(args: Args) -> torch.Tensor:
    return torch.stack(args.tensors("values"), dim=args.value("axis"))


@implements("split")
def split(args: Args) -> tuple[torch.Tensor, ...]:
    x = args.tensor("x")
    axis = args.value("axis")
    sizes = args.value("split_sizes")
    if sizes is None:
        count = args.value("num_splits")
        sizes = [x.shape[axis] // count] * count
    return tuple(torch.split(x, [int(s) for s in sizes], dim=axis))


@implements("slice_by_index")
def slice_by_index(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    rank = x.dim()
    begin = [int(v) for v in args.tensor("begin").tolist()]
    end = [int(v) for v in args.tensor("end").tolist()]
    stride = [int(v) for v in args.tensor("stride").tolist()] if args.has("stride") and args.value("stride") is not None else [1] * rank
    begin_mask = args.value("begin_mask") or [False] * rank
    end_mask = args.value("end_mask") or [False] * rank
    squeeze = args.value("squeeze_mask") or [False] * rank
    result = x
    out_axis = 0
    for axis in range(rank):
        size = x.shape[axis]
        if squeeze[axis]:
            result = result.select(out_axis, begin[axis] % size)
            continue
        start = None if begin_mask[axis] else begin[axis]
        stop = None if end_mask[axis] else end[axis]
        picks = list(range(size))[slice(start, stop, stride[axis])]  # MIL follows Python slicing
        result = result.index_select(out_axis, torch.tensor(picks, dtype=torch.long))
        out_axis += 1
    return result


@implements("slice_by_size")
def slice_by_size(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    begin = [int(v) for v in args.tensor("begin").tolist()]
    size = [int(v) for v in args.tensor("size").tolist()]
    return x[tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))]


@implements("gather")
def gather(args: Args) -> torch.Tensor:
    x, indices = args.tensor("x"), args.tensor("indices").long()
    axis = args.value("axis", 0) % x.dim()
    batch_dims = args.value("batch_dims", 0)
    indices = torch.where(indices < 0, indices + x.shape[axis], indices)
    if batch_dims == 0:
        flat = x.index_select(axis, indices.reshape(-1))
        return flat.reshape(list(x.shape[:axis]) + list(indices.shape) + list(x.shape[axis + 1 :]))
    results = [gather_batch(x[b], indices[b], axis - 1, batch_dims - 1) for b in range(x.shape[0])]
    return torch.stack(results)


def gather_batch(x: torch.Tensor, indices: torch.Tensor, axis: int, batch_dims: int) -> torch.Tensor:
    if batch_dims == 0:
        flat = x.index_select(axis, indices.reshape(-1))
        return flat.reshape(list(x.shape[:axis]) + list(indices.shape) + list(x.shape[axis + 1 :]))
    return torch.stack([gather_batch(x[b], indices[b], axis - 1, batch_dims - 1) for b in range(x.shape[0])])


@implements("gather_along_axis")
def gather_along_axis(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    axis = args.value("axis", 0)
    indices = args.tensor("indices").long()
    indices = torch.where(indices < 0, indices + x.shape[axis], indices)
    return torch.gather(x, axis, indices)


@implements("gather_nd")
def gather_nd(args: Args) -> torch.Tensor:
    x, indices = args.tensor("x"), args.tensor("indices").long()
    depth = indices.shape[-1]
    flat = indices.reshape(-1, depth)
    picked = x[tuple(flat[:, i] for i in range(depth))]
    return picked.reshape(list(indices.shape[:-1]) + list(x.shape[depth:]))


@implements("squeeze")
def squeeze(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    axes = args.value("axes")
    if axes is None:
        return x.squeeze()
    keep = [d for i, d in enumerate(x.shape) if i not in {a % x.dim() for a in axes}]
    return x.reshape(keep)


@implements("expand_dims")
def expand_dims(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    rank = x.dim() + len(args.value("axes"))
    for axis in sorted(a % rank for a in args.value("axes")):
        x = x.unsqueeze(axis)
    return x


@implements("tile")
def tile(args: Args) -> torch.Tensor:
    return args.tensor("x").repeat([int(r) for r in args.tensor("reps").tolist()])


@implements("reverse")
def reverse(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    axes = args.value("axes")
    return torch.flip(x, dims=list(range(x.dim())) if axes is None else axes)


@implements("flatten2d")
def flatten2d(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    axis = args.value("axis", 1) % max(x.dim(), 1)
    return x.reshape(int(torch.tensor(x.shape[:axis]).prod()), -1)


@implements("shape")
def shape(args: Args) -> torch.Tensor:
    return torch.tensor(list(args.tensor("x").shape), dtype=torch.int32)


@implements("fill")
def fill(args: Args) -> torch.Tensor:
    dims = [int(s) for s in args.tensor("shape").tolist()]
    value = args.tensor("value") if args.has("value") else torch.tensor(0.0)
    return torch.full(dims, value.item() if isinstance(value, torch.Tensor) else value, dtype=value.dtype if isinstance(value, torch.Tensor) else torch.float32)


@implements("fill_like")
def fill_like(args: Args) -> torch.Tensor:
    ref = args.tensor("ref_tensor")
    value = args.tensor("value") if args.has("value") else torch.tensor(0.0)
    return torch.full(ref.shape, value.item(), dtype=value.dtype)


@implements("range_1d")
def range_1d(args: Args) -> torch.Tensor:
    start, end, step = args.tensor("start"), args.tensor("end"), args.tensor("step")
    dtype = start.dtype
    return torch.arange(start.item(), end.item(), step.item(), dtype=dtype)


@implements("band_part")
def band_part(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    lower, upper = args.value("lower", -1), args.value("upper", -1)
    rows, cols = x.shape[-2:]
    i = torch.arange(rows).reshape(-1, 1)
    j = torch.arange(cols).reshape(1, -1)
    keep = torch.ones(rows, cols, dtype=torch.bool)
    if lower >= 0:
        keep &= (i - j) <= lower
    if upper >= 0:
        keep &= (j - i) <= upper
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype))


@implements("one_hot")
def one_hot(args: Args) -> torch.Tensor:
    indices = args.tensor("indices").long()
    depth = int(args.value("one_hot_vector_size"))
    axis = args.value("axis", -1)
    on, off = args.value("on_value", 1), args.value("off_value", 0)
    hot = torch.nn.functional.one_hot(indices, depth)
    hot = torch.movedim(hot, -1, axis)
    return torch.where(hot.bool(), torch.tensor(on), torch.tensor(off)).to(torch.float32 if isinstance(on, float) else torch.int32)


@implements("cumsum")
def cumsum(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    axis = args.value("axis", 0)
    if args.value("reverse", False):
        x = torch.flip(x, [axis])
    result = torch.cumsum(x, dim=axis)
    if args.value("exclusive", False):
        result = result - x
    return torch.flip(result, [axis]) if args.value("reverse", False) else result


_REDUCE: dict[str, Callable[..., torch.Tensor]] = {
    "reduce_sum": lambda x, axes, keep: x.sum(axes, keepdim=keep),
    "reduce_mean": lambda x, axes, keep: x.mean(axes, keepdim=keep),
    "reduce_prod": lambda x, axes, keep: _each(x, axes, keep, torch.prod),
    "reduce_max": lambda x, axes, keep: x.amax(axes, keepdim=keep),
    "reduce_min": lambda x, axes, keep: x.amin(axes, keepdim=keep),
    "reduce_l1_norm": lambda x, axes, keep: x.abs().sum(axes, keepdim=keep),
    "reduce_l2_norm": lambda x, axes, keep: torch.sqrt((x * x).sum(axes, keepdim=keep)),
    "reduce_sum_square": lambda x, axes, keep: (x * x).sum(axes, keepdim=keep),
    "reduce_log_sum": lambda x, axes, keep: torch.log(x.sum(axes, keepdim=keep)),
    "reduce_log_sum_exp": lambda x, axes, keep: torch.logsumexp(x, axes, keepdim=keep),
}


def _each(x: torch.Tensor, axes: list[int], keep: bool, fn: Callable[..., torch.Tensor]) -> torch.Tensor:
    for axis in sorted(axes, reverse=True):
        x = fn(x, dim=axis, keepdim=keep)
    return x


def _reduction(fn: Callable[..., torch.Tensor]) -> Callable[[Args], torch.Tensor]:
    def run(args: Args) -> torch.Tensor:
        x = args.tensor("x")
        axes = args.value("axes")
        axes = list(range(x.dim())) if axes is None else [a % x.dim() for a in axes]
        return fn(x, axes, bool(args.value("keep_dims", False)))

    return run


for _name, _fn in _REDUCE.items():
    implements(_name)(_reduction(_fn))


@implements("reduce_argmax", "reduce_argmin")
def reduce_arg(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    fn = torch.argmax if args.op.op_type == "reduce_argmax" else torch.argmin
    return fn(x, dim=args.value("axis", -1), keepdim=bool(args.value("keep_dims", False))).to(torch.int32)


@implements("topk")
def topk(args: Args) -> tuple[torch.Tensor, torch.Tensor]:
    x = args.tensor("x")
    k = int(args.value("k", 1))
    axis = args.value("axis", -1)
    values, indices = torch.topk(x, k, dim=axis, largest=not args.value("ascending", False), sorted=True)
    return values, indices.to(torch.int32)


@implements("argsort")
def argsort(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    return torch.argsort(x, dim=args.value("axis", -1), descending=not args.value("ascending", False), stable=True).to(torch.int32)


@implements("identity_n")
def identity_n(args: Args) -> tuple[torch.Tensor, ...]:
    return tuple(args.tensors("x"))


_SCATTER: dict[str, Callable[..., torch.Tensor]] = {
    "update": lambda old, new: new,
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.true_divide,
    "max": torch.maximum,
    "min": torch.minimum,
}


@implements("scatter")
def scatter(args: Args) -> torch.Tensor:
    """data with slices ``indices`` along ``axis`` combined with ``updates`` by ``mode``."""
    data = args.tensor("data").clone()
    indices = args.tensor("indices").long().reshape(-1)
    updates = args.tensor("updates").to(data.dtype)
    axis = args.value("axis", 0) % data.dim()
    combine = _SCATTER[args.value("mode", "update")]
    indices = torch.where(indices < 0, indices + data.shape[axis], indices)
    for position, index in enumerate(indices.tolist()):
        target: list[Any] = [slice(None)] * data.dim()
        target[axis] = index
        source: list[Any] = [slice(None)] * data.dim()
        source[axis] = position
        data[tuple(target)] = combine(data[tuple(target)], updates[tuple(source)])
    return data


@implements("scatter_along_axis")
def scatter_along_axis(args: Args) -> torch.Tensor:
    data = args.tensor("data")
    indices = args.tensor("indices").long()
    axis = args.value("axis", 0) % data.dim()
    indices = torch.where(indices < 0, indices + data.shape[axis], indices)
    updates = args.tensor("updates").to(data.dtype)
    mode = args.value("mode", "update")
    if mode == "update":
        return data.scatter(axis, indices, updates)
    reduce = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}[mode]
    return data.scatter_reduce(axis, indices, updates, reduce=reduce, include_self=True)
