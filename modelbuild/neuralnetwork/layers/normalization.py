"""Batch and instance norm, mean-variance and L2 normalisation, layer norm, softmax."""

from __future__ import annotations

from typing import Any

import torch

from modelbuild.neuralnetwork.registry import implements
from modelbuild.neuralnetwork.weights import tensor


def _per_channel(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-channel vector shaped to broadcast over (C, H, W), the last three axes."""
    return values.to(x.dtype).reshape(-1, 1, 1)


@implements("batchnorm")
def batchnorm(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    gamma, beta = _per_channel(tensor(p.gamma), x), _per_channel(tensor(p.beta), x)
    if p.computeMeanVar:
        # Instance norm: each image's own statistics; otherwise over the whole batch.
        axes = (-2, -1) if p.instanceNormalization else tuple(a for a in range(x.dim()) if a != x.dim() - 3)
        mean = x.mean(dim=axes, keepdim=True)
        variance = ((x - mean) ** 2).mean(dim=axes, keepdim=True)
    else:
        mean, variance = _per_channel(tensor(p.mean), x), _per_channel(tensor(p.variance), x)
    return gamma * (x - mean) / torch.sqrt(variance + p.epsilon) + beta


@implements("mvn")
def mean_variance_normalize(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    axes = (-3, -2, -1) if p.acrossChannels else (-2, -1)
    centred = x - x.mean(dim=axes, keepdim=True)
    if not p.normalizeVariance:
        return centred
    return centred / torch.sqrt((centred**2).mean(dim=axes, keepdim=True) + p.epsilon)


@implements("l2normalize")
def l2_normalize(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    return x / torch.sqrt((x * x).sum(dim=(-3, -2, -1), keepdim=True) + p.epsilon)


@implements("layerNormalization")
def layer_normalization(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    shape = list(p.normalizedShape)
    gamma, beta = tensor(p.gamma, shape).to(x.dtype), tensor(p.beta, shape).to(x.dtype)
    return torch.nn.functional.layer_norm(x, shape, gamma, beta, p.eps)


@implements("softmax")
def softmax(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.softmax(xs[0], dim=-3)  # Core ML's rank-5 softmax: across channels


@implements("softmaxND")
def softmax_nd(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.softmax(xs[0], dim=p.axis)
