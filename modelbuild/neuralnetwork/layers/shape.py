"""Reshape, flatten, permute/transpose, concat/split, squeeze/expand, slices, constants,
shapes and reductions.

The legacy layers (reshape, flatten, permute, concat, split) read tensors in Core ML's rank-5
layout (Seq, B, C, H, W); the ND layers (reshapeStatic, transpose, concatND, ...) read them as
they are."""

from __future__ import annotations

from typing import Any

import torch

from modelbuild.neuralnetwork.registry import implements
from modelbuild.neuralnetwork.weights import UnsupportedLayer, enum_name, tensor


@implements("reshapeStatic")
def reshape_static(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0].reshape(list(p.targetShape))


@implements("rankPreservingReshape")
def rank_preserving_reshape(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    target = [xs[0].shape[i] if d == 0 else d for i, d in enumerate(p.targetShape)]
    return xs[0].reshape(target)


@implements("reshapeLike")
def reshape_like(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0].reshape(xs[1].shape)


@implements("reshapeDynamic")
def reshape_dynamic(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0].reshape([int(d) for d in xs[1].reshape(-1).tolist()])


@implements("reshape")
def reshape(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    if enum_name(p, "mode") != "CHANNEL_FIRST":
        raise UnsupportedLayer("reshape with mode CHANNEL_LAST")
    target = list(p.targetShape)  # (C, H, W) or (Seq, C, H, W), the batch kept
    batch = x.shape[:-3] if len(target) == 3 else ()
    return x.reshape(*batch, *target) if batch else x.reshape(target)


@implements("flatten")
def flatten(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    if enum_name(p, "mode") == "CHANNEL_LAST":
        x = x.movedim(-3, -1)
    return x.reshape(*x.shape[:-3], -1, 1, 1)


@implements("flattenTo2D")
def flatten_to_2d(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    axis = p.axis % x.dim() if x.dim() else 0
    return x.reshape(int(torch.tensor(x.shape[:axis]).prod()), -1)


@implements("permute")
def permute(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    axes = list(p.axis)  # a permutation of (Seq, C, H, W); the batch stays in place
    if x.dim() == 4 and axes[0] == 0:
        return x.permute(0, *[a for a in axes[1:]])  # Seq of 1 folded away: (B, C, H, W)
    if x.dim() == 5:
        full = [axes[0] + (1 if axes[0] > 0 else 0), 1, *[a + 1 for a in axes[1:]]]
        return x.permute(full)
    raise UnsupportedLayer(f"permute {axes} of a rank-{x.dim()} tensor")


@implements("transpose")
def transpose(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0].permute(list(p.axes))


@implements("concat")
def concat(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(xs, dim=0 if p.sequenceConcat else -3)


@implements("concatND")
def concat_nd(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    if p.interleave:
        return torch.stack(xs, dim=p.axis + 1 if p.axis >= 0 else p.axis).flatten(p.axis, p.axis + 1 if p.axis >= 0 else p.axis)
    return torch.cat(xs, dim=p.axis)


@implements("stack")
def stack(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(xs, dim=p.axis)


@implements("split")
def split(p: Any, xs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.chunk(xs[0], p.nOutputs, dim=-3))


@implements("splitND")
def split_nd(p: Any, xs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    sizes = list(p.splitSizes)
    if sizes:
        return tuple(torch.split(xs[0], sizes, dim=p.axis))
    return tuple(torch.chunk(xs[0], p.numSplits, dim=p.axis))


@implements("squeeze")
def squeeze(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    if p.squeezeAll:
        return x.squeeze()
    for axis in sorted((a % x.dim() for a in p.axes), reverse=True):
        x = x.squeeze(axis)
    return x


@implements("expandDims")
def expand_dims(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    rank = x.dim() + len(p.axes)
    for axis in sorted(a % rank for a in p.axes):
        x = x.unsqueeze(axis)
    return x


@implements("sliceStatic")
def slice_static(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    index: list[Any] = []
    squeeze_axes = []
    for axis in range(x.dim()):
        begin = None if p.beginMasks[axis] else p.beginIds[axis]
        end = None if p.endMasks[axis] else p.endIds[axis]
        step = p.strides[axis] if len(p.strides) else 1
        if len(p.squeezeMasks) and p.squeezeMasks[axis]:
            index.append(p.beginIds[axis])
            squeeze_axes.append(axis)
        else:
            index.append(slice(begin, end, step))
    return x[tuple(index)]


@implements("sliceBySize")
def slice_by_size(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    begin = int(xs[1].reshape(-1)[0])
    return xs[0].narrow(p.axis, begin, p.size)


@implements("loadConstantND")
def load_constant_nd(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return tensor(p.data, list(p.shape))


@implements("loadConstant")
def load_constant(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return tensor(p.data, list(p.shape))


@implements("getShape")
def get_shape(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.tensor(list(xs[0].shape), dtype=torch.float32)


@implements("fillStatic")
def fill_static(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.full(list(p.targetShape), p.value)


@implements("fillLike")
def fill_like(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.full_like(xs[0], p.value)


@implements("broadcastToStatic")
def broadcast_to_static(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0].expand(list(p.targetShape)).clone()


@implements("broadcastToLike")
def broadcast_to_like(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0].expand(xs[1].shape).clone()


@implements("tile")
def tile(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0].repeat(list(p.reps))


@implements("gather")
def gather(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.index_select(xs[0], p.axis, xs[1].long().reshape(-1)).reshape(
        *xs[0].shape[: p.axis % xs[0].dim()], *xs[1].shape, *xs[0].shape[p.axis % xs[0].dim() + 1 :]
    )


def _reduction(fn: Any) -> Any:
    def run(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
        x = xs[0]
        axes = list(range(x.dim())) if p.reduceAll else [a % x.dim() for a in p.axes]
        return fn(x, axes, p.keepDims)

    return run


REDUCTIONS = {
    "reduceSum": lambda x, a, k: x.sum(a, keepdim=k),
    "reduceMean": lambda x, a, k: x.mean(a, keepdim=k),
    "reduceMax": lambda x, a, k: x.amax(a, keepdim=k),
    "reduceMin": lambda x, a, k: x.amin(a, keepdim=k),
    "reduceL1": lambda x, a, k: x.abs().sum(a, keepdim=k),
    "reduceL2": lambda x, a, k: (x * x).sum(a, keepdim=k).sqrt(),
    "reduceSumSquare": lambda x, a, k: (x * x).sum(a, keepdim=k),
    "reduceLogSum": lambda x, a, k: x.sum(a, keepdim=k).log(),
    "reduceLogSumExp": lambda x, a, k: torch.logsumexp(x, a, keepdim=k),
}

for _name, _fn in REDUCTIONS.items():
    implements(_name)(_reduction(_fn))


@implements("slice")
def legacy_slice(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    """Core ML's first slice: one of the channel, height or width axes, end index -1 meaning
    "to the end" (as in coremltools' builder)."""
    x = xs[0]
    axis = {"CHANNEL_AXIS": -3, "HEIGHT_AXIS": -2, "WIDTH_AXIS": -1}[enum_name(p, "axis")]
    end = p.endIndex if p.endIndex != -1 else x.shape[axis]
    if end < 0:
        end += x.shape[axis]
    index: list[Any] = [slice(None)] * x.dim()
    index[axis] = slice(p.startIndex, end, p.stride or 1)
    return x[tuple(index)]


@implements("crop")
def crop(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    if len(xs) == 2:  # crop to the second input's H, W at the given offset
        top, left = list(p.offset) or [0, 0]
        height, width = xs[1].shape[-2:]
        return x[..., top : top + height, left : left + width]
    (top, bottom), (left, right) = [(b.startEdgeSize, b.endEdgeSize) for b in p.cropAmounts.borderAmounts]
    return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]
