"""Layers: convolution, linear algebra, normalisation, pooling, resizing, padding."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from modelbuild.mil.args import Args
from modelbuild.mil.registry import implements


def half_safe(fn: Callable[..., torch.Tensor], x: torch.Tensor, *rest: Any) -> torch.Tensor:
    """Run in the tensor's dtype; where the CPU has no float16 kernel, compute in float32 and
    round the result back to float16 (documented in docs/mil-ops.md)."""
    try:
        return fn(x, *rest)
    except RuntimeError as exc:
        if x.dtype != torch.float16 or "Half" not in str(exc):
            raise
        up = [r.float() if isinstance(r, torch.Tensor) and r.is_floating_point() else r for r in rest]
        return fn(x.float(), *up).half()


def _pads(args: Args, spatial: list[int], kernel: list[int], strides: list[int], dilations: list[int]) -> list[tuple[int, int]]:
    """(begin, end) padding per spatial axis for MIL's pad_type: valid, same, same_lower, custom."""
    pad_type = args.value("pad_type", "valid")
    if pad_type == "custom":
        pad = args.value("pad", [0] * 2 * len(spatial))
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(len(spatial))]
    if pad_type == "valid":
        return [(0, 0)] * len(spatial)
    result = []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        result.append((small, total - small) if pad_type == "same" else (total - small, small))
    return result


def _torch_pad(pads: list[tuple[int, int]]) -> list[int]:
    flat: list[int] = []
    for begin, end in reversed(pads):
        flat += [begin, end]
    return flat


@implements("conv")
def conv(args: Args) -> torch.Tensor:
    x, weight, bias = args.tensor("x"), args.tensor("weight"), args.optional("bias")
    n = x.dim() - 2
    strides = args.value("strides", [1] * n)
    dilations = args.value("dilations", [1] * n)
    pads = _pads(args, list(x.shape[2:]), list(weight.shape[2:]), strides, dilations)
    x = F.pad(x, _torch_pad(pads))
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
    weight = weight.to(x.dtype)
    bias = bias.to(x.dtype) if bias is not None else None
    return half_safe(lambda a, w, b: fn(a, w, b, stride=strides, dilation=dilations, groups=args.value("groups", 1)), x, weight, bias)


@implements("conv_transpose")
def conv_transpose(args: Args) -> torch.Tensor:
    x, weight, bias = args.tensor("x"), args.tensor("weight"), args.optional("bias")
    n = x.dim() - 2
    strides = args.value("strides", [1] * n)
    dilations = args.value("dilations", [1] * n)
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
    weight = weight.to(x.dtype)
    bias = bias.to(x.dtype) if bias is not None else None
    full = half_safe(lambda a, w, b: fn(a, w, b, stride=strides, dilation=dilations, groups=args.value("groups", 1)), x, weight, bias)
    sizes = list(full.shape[2:])
    pad_type = args.value("pad_type", "valid")
    pad = args.value("pad", [0] * 2 * n) if pad_type == "custom" else [0] * 2 * n
    if args.value("output_shape") is not None:
        wanted = [int(v) for v in args.value("output_shape")][-n:]
    elif pad_type == "same":
        wanted = [int(s) * st for s, st in zip(x.shape[2:], strides)]
    else:
        wanted = [size - pad[2 * i] - pad[2 * i + 1] for i, size in enumerate(sizes)]
    begins = [(size - w) // 2 for size, w in zip(sizes, wanted)] if pad_type == "same" else [pad[2 * i] for i in range(n)]
    return full[(Ellipsis,) + tuple(slice(b, b + w) for b, w in zip(begins, wanted))]


@implements("linear")
def linear(args: Args) -> torch.Tensor:
    x, weight, bias = args.tensor("x"), args.tensor("weight"), args.optional("bias")
    return half_safe(lambda a, w, b: F.linear(a, w, b), x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))


@implements("matmul")
def matmul(args: Args) -> torch.Tensor:
    x, y = args.tensor("x"), args.tensor("y")
    if args.value("transpose_x", False):
        x = x.transpose(-1, -2)
    if args.value("transpose_y", False):
        y = y.transpose(-1, -2)
    return half_safe(torch.matmul, x, y.to(x.dtype))


@implements("einsum")
def einsum(args: Args) -> torch.Tensor:
    values = args.tensors("values")
    return half_safe(lambda *vs: torch.einsum(args.value("equation"), *vs), *values)


def _channel(t: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t.to(x.dtype).reshape([1, -1] + [1] * (x.dim() - 2))


def _normalise(args: Args, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """(x - mean) / sqrt(var + epsilon), then the optional per-channel gamma and beta."""
    y = (x - mean) / torch.sqrt(var + args.value("epsilon", 1e-5))
    gamma, beta = _channel(args.optional("gamma"), x), _channel(args.optional("beta"), x)
    return y * (gamma if gamma is not None else 1) + (beta if beta is not None else 0)


def _moments(x: torch.Tensor, axes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(axes, keepdim=True)
    return mean, ((x - mean) ** 2).mean(axes, keepdim=True)


@implements("batch_norm")
def batch_norm(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    mean, variance = _channel(args.tensor("mean"), x), _channel(args.tensor("variance"), x)
    assert mean is not None and variance is not None  # required inputs of batch_norm
    return _normalise(args, x, mean, variance)


@implements("instance_norm")
def instance_norm(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    return _normalise(args, x, *_moments(x, list(range(2, x.dim()))))


@implements("layer_norm")
def layer_norm(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    axes = [a % x.dim() for a in (args.value("axes") if args.has("axes") else list(range(x.dim())))]
    mean, var = _moments(x, axes)
    y = (x - mean) / torch.sqrt(var + args.value("epsilon", 1e-5))
    shape = [x.shape[a] if a in axes else 1 for a in range(x.dim())]
    gamma, beta = args.optional("gamma"), args.optional("beta")
    if gamma is not None:
        y = y * gamma.to(x.dtype).reshape(shape)
    if beta is not None:
        y = y + beta.to(x.dtype).reshape(shape)
    return y


@implements("l2_norm")
def l2_norm(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    axes = list(range(x.dim() - len(args.value("axes", [-1])), x.dim())) if args.has("axes") else [-1]
    norm = torch.sqrt((x * x).sum(axes, keepdim=True))
    return x / torch.clamp(norm, min=args.value("epsilon", 1e-6))


def _pool(args: Args, kind: str) -> torch.Tensor:
    x = args.tensor("x")
    n = x.dim() - 2
    kernel = args.value("kernel_sizes")
    strides = args.value("strides", [1] * n)
    pads = _pads(args, list(x.shape[2:]), kernel, strides, [1] * n)
    ceil = bool(args.value("ceil_mode", False))
    if kind == "max":
        padded = F.pad(x, _torch_pad(pads), value=float("-inf"))
        max_pool: Callable[..., torch.Tensor] = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
        return half_safe(lambda a: max_pool(a, kernel, strides, ceil_mode=ceil), padded)
    fn: Callable[..., torch.Tensor] = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    padded = F.pad(x, _torch_pad(pads))
    total = half_safe(lambda a: fn(a, kernel, strides, ceil_mode=ceil), padded)
    if args.value("exclude_padding_from_average", False) and any(p != (0, 0) for p in pads):
        ones = F.pad(torch.ones_like(x[:1, :1]), _torch_pad(pads))
        share = half_safe(lambda a: fn(a, kernel, strides, ceil_mode=ceil), ones)
        return total / share
    return total


@implements("max_pool")
def max_pool(args: Args) -> torch.Tensor:
    return _pool(args, "max")


@implements("avg_pool")
def avg_pool(args: Args) -> torch.Tensor:
    return _pool(args, "avg")


def _source_coords(out: int, size: int, mode: str, scale: float | None = None) -> torch.Tensor:
    dst = torch.arange(out, dtype=torch.float64)
    if mode in ("ALIGN_CORNERS", "STRICT_ALIGN_CORNERS"):
        src = dst * ((size - 1) / (out - 1)) if out > 1 else torch.zeros_like(dst)
    elif mode == "UNALIGN_CORNERS":
        src = (dst + 0.5) * (size / out if scale is None else 1 / scale) - 0.5
    elif mode == "DEFAULT":
        src = dst * (size / out if scale is None else 1 / scale)
    else:
        raise NotImplementedError(f"sampling_mode {mode!r}")
    return src.clamp(0, size - 1)


def _bilinear(x: torch.Tensor, out_h: int, out_w: int, mode: str, scales: tuple[float | None, float | None] = (None, None)) -> torch.Tensor:
    def axis(t: torch.Tensor, dim: int, out: int, scale: float | None) -> torch.Tensor:
        size = t.shape[dim]
        src = _source_coords(out, size, mode, scale)
        low = src.floor().long().clamp(0, size - 1)
        high = (low + 1).clamp(max=size - 1)
        weight = (src - low.double()).to(t.dtype)
        shape = [1] * t.dim()
        shape[dim] = out
        weight = weight.reshape(shape)
        return t.index_select(dim, low) * (1 - weight) + t.index_select(dim, high) * weight

    return axis(axis(x, x.dim() - 2, out_h, scales[0]), x.dim() - 1, out_w, scales[1])


def _nearest(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    rows = torch.clamp((torch.arange(out_h, dtype=torch.float64) * (h / out_h)).floor().long(), max=h - 1)
    cols = torch.clamp((torch.arange(out_w, dtype=torch.float64) * (w / out_w)).floor().long(), max=w - 1)
    return x.index_select(-2, rows).index_select(-1, cols)


@implements("upsample_nearest_neighbor")
def upsample_nearest_neighbor(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    sh, sw = args.value("scale_factor_height", 1), args.value("scale_factor_width", 1)
    return _nearest(x, int(math.floor(x.shape[-2] * sh)), int(math.floor(x.shape[-1] * sw)))


@implements("upsample_bilinear")
def upsample_bilinear(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    sh, sw = args.value("scale_factor_height", 1), args.value("scale_factor_width", 1)
    out_h, out_w = int(math.floor(x.shape[-2] * sh)), int(math.floor(x.shape[-1] * sw))
    if args.value("align_corners", False):
        return _bilinear(x, out_h, out_w, "ALIGN_CORNERS")
    mode = "UNALIGN_CORNERS" if args.value("half_pixel_centers", not args.value("align_corners", False)) else "DEFAULT"
    return _bilinear(x, out_h, out_w, mode, (sh, sw))


@implements("resize_bilinear")
def resize_bilinear(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    return _bilinear(x, args.value("target_size_height"), args.value("target_size_width"), args.value("sampling_mode", "DEFAULT"))


@implements("resize_nearest_neighbor")
def resize_nearest_neighbor(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    return _nearest(x, args.value("target_size_height"), args.value("target_size_width"))


@implements("resize")
def resize(args: Args) -> torch.Tensor:
    """iOS17 resize: the target size is a run-time tensor (a size computed from an input)."""
    x = args.tensor("x")
    shape = [int(s) for s in args.tensor("shape").tolist()]
    dims = args.value("resized_dims", 2)
    out_h, out_w = (shape[-2], shape[-1]) if dims == 2 else (x.shape[-2], shape[-1])
    if args.value("interpolation_mode", "LINEAR") == "NEAREST_NEIGHBOR":
        return _nearest(x, out_h, out_w)
    return _bilinear(x, out_h, out_w, args.value("sampling_mode", "DEFAULT"))


@implements("pad")
def pad(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    amounts = [int(p) for p in args.value("pad")]
    pairs = [(amounts[2 * i], amounts[2 * i + 1]) for i in range(len(amounts) // 2)]
    pairs = [(0, 0)] * (x.dim() - len(pairs)) + pairs  # MIL pads the last len(pad)/2 axes
    mode = args.value("mode", "constant")
    if mode != "constant":
        while pairs and pairs[0] == (0, 0):  # torch's reflect/replicate pad only trailing axes
            pairs = pairs[1:]
    flat = _torch_pad(pairs)
    if mode == "constant":
        return F.pad(x, flat, value=args.value("constant_val", 0.0))
    torch_mode = {"reflect": "reflect", "replicate": "replicate"}[mode]
    return half_safe(lambda a: F.pad(a, flat, mode=torch_mode), x)
