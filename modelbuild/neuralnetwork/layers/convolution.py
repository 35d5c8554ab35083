"""Convolution and deconvolution, padding, pooling and upsampling: Core ML's spatial layers.

Spatial layers act on the last three axes (C, H, W), as Core ML's rank-5 layout does."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from modelbuild.neuralnetwork.registry import implements
from modelbuild.neuralnetwork.weights import UnsupportedLayer, enum_name, tensor


def _as_4d(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(N, C, H, W) and the leading axes to restore: Core ML hands spatial layers rank 3 to 5."""
    if x.dim() == 3:
        return x.unsqueeze(0), ()
    if x.dim() == 4:
        return x, x.shape[:1]
    return x.reshape(-1, *x.shape[-3:]), tuple(x.shape[:-3])


def _restore(y: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
    return y.squeeze(0) if lead == () else y.reshape(*lead, *y.shape[1:])


def _borders(padding: Any) -> list[tuple[int, int]]:
    """[(top, bottom), (left, right)] from ``paddingAmounts``."""
    amounts = [(b.startEdgeSize, b.endEdgeSize) for b in padding.paddingAmounts.borderAmounts]
    return amounts + [(0, 0)] * (2 - len(amounts))


def _same(size: int, kernel: int, stride: int, dilation: int, mode: str) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small = total // 2
    return (small, total - small) if mode == "BOTTOM_RIGHT_HEAVY" else (total - small, small)


@implements("convolution")
def convolution(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x, lead = _as_4d(xs[0])
    kh, kw = list(p.kernelSize) or [3, 3]
    sh, sw = list(p.stride) or [1, 1]
    dh, dw = list(p.dilationFactor) or [1, 1]
    groups = p.nGroups or 1
    bias = tensor(p.bias) if p.hasBias else None
    if len(xs) > 1:
        raise UnsupportedLayer("convolution with its weights as a second input")
    if p.isDeconvolution:
        weight = tensor(p.weights, (p.kernelChannels, p.outputChannels // groups, kh, kw))
        full = F.conv_transpose2d(x, weight, bias, (sh, sw), groups=groups, dilation=(dh, dw))
        if p.WhichOneof("ConvolutionPaddingType") == "same":
            mode = enum_name(p.same, "asymmetryMode")
            crops = [_crop_same(full.shape[2], x.shape[2] * sh, mode), _crop_same(full.shape[3], x.shape[3] * sw, mode)]
        else:
            crops = _borders(p.valid)
        target = list(p.outputShape) or [full.shape[2] - sum(crops[0]), full.shape[3] - sum(crops[1])]
        return _restore(_window(full, crops[0][0], crops[1][0], target, bias), lead)
    weight = tensor(p.weights, (p.outputChannels, p.kernelChannels, kh, kw))
    if p.WhichOneof("ConvolutionPaddingType") == "same":
        mode = enum_name(p.same, "asymmetryMode")
        (top, bottom), (left, right) = _same(x.shape[2], kh, sh, dh, mode), _same(x.shape[3], kw, sw, dw, mode)
    else:
        (top, bottom), (left, right) = _borders(p.valid)
    x = F.pad(x, (left, right, top, bottom))
    return _restore(F.conv2d(x, weight, bias, (sh, sw), groups=groups, dilation=(dh, dw)), lead)


def _crop_same(full: int, wanted: int, mode: str) -> tuple[int, int]:
    total = max(full - wanted, 0)
    small = total // 2
    return (small, total - small) if mode == "BOTTOM_RIGHT_HEAVY" else (total - small, small)


def _window(full: torch.Tensor, top: int, left: int, size: list[int], bias: torch.Tensor | None) -> torch.Tensor:
    """``full[top:top+H, left:left+W]``; rows past the end hold the bias alone (torch's
    output_padding of a transposed convolution)."""
    height, width = size
    out = full.new_zeros(full.shape[0], full.shape[1], height, width)
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    h = min(height, full.shape[2] - top)
    w = min(width, full.shape[3] - left)
    out[:, :, :h, :w] = full[:, :, top : top + h, left : left + w]
    return out


@implements("padding")
def padding(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x, lead = _as_4d(xs[0])
    (top, bottom), (left, right) = _borders(p)
    kind = p.WhichOneof("PaddingType")
    if kind == "constant":
        y = F.pad(x, (left, right, top, bottom), value=p.constant.value)
    else:
        y = F.pad(x, (left, right, top, bottom), mode="reflect" if kind == "reflection" else "replicate")
    return _restore(y, lead)


@implements("constantPad")
def constant_pad(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    if p.padToGivenOutputSizeMode:
        raise UnsupportedLayer("constantPad with padToGivenOutputSizeMode")
    amounts = list(p.padAmounts)  # (begin, end) per axis, from the first axis
    pairs = [amounts[i : i + 2] for i in range(0, len(amounts), 2)]
    flat: list[int] = []
    for begin, end in reversed(pairs):
        flat += [begin, end]
    return F.pad(xs[0], flat, value=p.value)


@implements("upsample")
def upsample(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x, lead = _as_4d(xs[0])
    if len(p.fractionalScalingFactor):
        sh, sw = list(p.fractionalScalingFactor)
    else:
        sh, sw = list(p.scalingFactor) or [1, 1]
    size = (int(round(x.shape[2] * sh)), int(round(x.shape[3] * sw)))
    if enum_name(p, "mode") == "NN":
        return _restore(F.interpolate(x, size=size, mode="nearest"), lead)
    mode = enum_name(p, "linearUpsampleMode")
    if mode == "ALIGN_CORNERS_TRUE":
        return _restore(F.interpolate(x, size=size, mode="bilinear", align_corners=True), lead)
    if mode == "ALIGN_CORNERS_FALSE":
        return _restore(F.interpolate(x, size=size, mode="bilinear", align_corners=False), lead)
    return _restore(_bilinear_asymmetric(x, size), lead)


def _bilinear_asymmetric(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Core ML's DEFAULT linear mode: output point i samples input point i * (in / out)."""

    def weights(n_in: int, n_out: int) -> torch.Tensor:
        points = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
        low = points.floor().clamp(max=n_in - 1).long()
        high = (low + 1).clamp(max=n_in - 1)
        frac = (points - low).to(x.dtype)
        matrix = x.new_zeros(n_out, n_in)
        matrix[torch.arange(n_out), low] += 1 - frac
        matrix[torch.arange(n_out), high] += frac
        return matrix

    rows, cols = weights(x.shape[2], size[0]), weights(x.shape[3], size[1])
    return torch.einsum("oh,nchw,pw->ncop", rows, x, cols)


@implements("pooling")
def pooling(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x, lead = _as_4d(xs[0])
    kind = enum_name(p, "type")
    if p.globalPooling:
        if kind == "MAX":
            return _restore(x.amax(dim=(2, 3), keepdim=True), lead)
        if kind == "AVERAGE":
            return _restore(x.mean(dim=(2, 3), keepdim=True), lead)
        return _restore(x.pow(2).sum(dim=(2, 3), keepdim=True).sqrt(), lead)
    kh, kw = list(p.kernelSize) or [3, 3]
    sh, sw = list(p.stride) or [1, 1]
    scheme = p.WhichOneof("PoolingPaddingType")
    ceil = False
    if scheme == "same":
        mode = enum_name(p.same, "asymmetryMode")
        (top, bottom), (left, right) = _same(x.shape[2], kh, sh, 1, mode), _same(x.shape[3], kw, sw, 1, mode)
    elif scheme == "includeLastPixel":
        ph, pw = list(p.includeLastPixel.paddingAmounts) or [0, 0]
        (top, bottom), (left, right), ceil = (ph, ph), (pw, pw), True
    else:
        (top, bottom), (left, right) = _borders(p.valid)
    pads = (left, right, top, bottom)
    if kind == "MAX":
        return _restore(F.max_pool2d(F.pad(x, pads, value=float("-inf")), (kh, kw), (sh, sw), ceil_mode=ceil), lead)
    if kind == "L2":
        return _restore(F.avg_pool2d(F.pad(x * x, pads), (kh, kw), (sh, sw), ceil_mode=ceil).mul(kh * kw).sqrt(), lead)
    total = F.avg_pool2d(F.pad(x, pads), (kh, kw), (sh, sw), ceil_mode=ceil, divisor_override=1)
    if p.avgPoolExcludePadding:
        counts = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), pads), (kh, kw), (sh, sw), ceil_mode=ceil, divisor_override=1)
        return _restore(total / counts, lead)
    return _restore(total / (kh * kw), lead)
