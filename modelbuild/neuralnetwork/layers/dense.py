"""Inner product, batched matrix multiplication and embeddings."""

from __future__ import annotations

from typing import Any

import torch

from modelbuild.neuralnetwork.registry import implements
from modelbuild.neuralnetwork.weights import UnsupportedLayer, tensor


@implements("innerProduct")
def inner_product(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    if p.int8DynamicQuantize:
        raise UnsupportedLayer("innerProduct with int8DynamicQuantize")
    x = xs[0]
    weight = tensor(p.weights, (p.outputChannels, p.inputChannels)).to(x.dtype)
    bias = tensor(p.bias).to(x.dtype) if p.hasBias else None
    if x.dim() >= 3 and x.shape[-3] == p.inputChannels and x.shape[-2:] == (1, 1):
        # Core ML's rank-5 inner product: over C of (C, 1, 1)
        flat = x.reshape(*x.shape[:-3], p.inputChannels)
        return torch.nn.functional.linear(flat, weight, bias).reshape(*x.shape[:-3], p.outputChannels, 1, 1)
    return torch.nn.functional.linear(x, weight, bias)


@implements("batchedMatmul")
def batched_matmul(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    if p.int8DynamicQuantize:
        raise UnsupportedLayer("batchedMatmul with int8DynamicQuantize")
    a = xs[0].transpose(-1, -2) if p.transposeA else xs[0]
    if len(xs) == 2:
        b = xs[1].transpose(-1, -2) if p.transposeB else xs[1]
        return a @ b
    # One input: the weight is stored as (out, in), coremltools writing W.T of (in, out).
    weight = tensor(p.weights, (p.weightMatrixSecondDimension, p.weightMatrixFirstDimension)).to(a.dtype)
    bias = tensor(p.bias).to(a.dtype) if p.hasBias else None
    return torch.nn.functional.linear(a, weight, bias)


@implements("embeddingND")
def embedding_nd(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    weight = tensor(p.weights, (p.embeddingSize, p.vocabSize)).t()
    ids = xs[0].long()
    if ids.shape[-1] == 1:
        ids = ids.squeeze(-1)
    out = weight[ids]
    return out + tensor(p.bias) if p.hasBias else out
