"""Activations, arithmetic (the legacy elementwise layers and the broadcastable ones), unary
functions, comparisons and clipping."""

from __future__ import annotations

from functools import reduce
from typing import Any, Callable

import torch
import torch.nn.functional as F

from modelbuild.neuralnetwork.registry import implements
from modelbuild.neuralnetwork.weights import UnsupportedLayer, enum_name, tensor


def _channel(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.to(x.dtype).reshape(-1, 1, 1) if values.numel() > 1 else values.to(x.dtype).reshape(())


ACTIVATIONS: dict[str, Callable[[Any, torch.Tensor], torch.Tensor]] = {
    "linear": lambda a, x: a.alpha * x + a.beta,
    "ReLU": lambda a, x: torch.relu(x),
    "leakyReLU": lambda a, x: torch.where(x >= 0, x, a.alpha * x),
    "thresholdedReLU": lambda a, x: torch.where(x > a.alpha, x, torch.zeros_like(x)),
    "PReLU": lambda a, x: torch.where(x >= 0, x, _channel(tensor(a.alpha), x) * x),
    "tanh": lambda a, x: torch.tanh(x),
    "scaledTanh": lambda a, x: a.alpha * torch.tanh(a.beta * x),
    "sigmoid": lambda a, x: torch.sigmoid(x),
    "sigmoidHard": lambda a, x: torch.clamp(a.alpha * x + a.beta, 0.0, 1.0),
    "ELU": lambda a, x: torch.where(x > 0, x, a.alpha * (torch.exp(x) - 1)),
    "softsign": lambda a, x: x / (1 + x.abs()),
    "softplus": lambda a, x: F.softplus(x),
    "parametricSoftplus": lambda a, x: _channel(tensor(a.alpha), x) * F.softplus(_channel(tensor(a.beta), x) * x),
}


@implements("activation")
def activation(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    kind = p.WhichOneof("NonlinearityType")
    return ACTIVATIONS[kind](getattr(p, kind), xs[0])


def _legacy(combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], scalar: str | None) -> Callable[..., torch.Tensor]:
    """Core ML's first elementwise layers: n inputs combined; one input with the ``alpha`` scalar."""

    def run(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
        if len(xs) == 1 and scalar is not None:
            return combine(xs[0], torch.tensor(getattr(p, scalar), dtype=xs[0].dtype))
        return reduce(combine, xs)

    return run


implements("add")(_legacy(torch.add, "alpha"))
implements("multiply")(_legacy(torch.mul, "alpha"))
implements("max")(_legacy(torch.maximum, None))
implements("min")(_legacy(torch.minimum, None))


@implements("average")
def average(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return reduce(torch.add, xs) / len(xs)


BROADCASTABLE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "addBroadcastable": torch.add,
    "subtractBroadcastable": torch.sub,
    "multiplyBroadcastable": torch.mul,
    "divideBroadcastable": torch.true_divide,
    "maxBroadcastable": torch.maximum,
    "minBroadcastable": torch.minimum,
    "powBroadcastable": torch.pow,
    "modBroadcastable": torch.remainder,
    "floorDivBroadcastable": torch.floor_divide,
    "equal": torch.eq,
    "notEqual": torch.ne,
    "lessThan": torch.lt,
    "lessEqual": torch.le,
    "greaterThan": torch.gt,
    "greaterEqual": torch.ge,
    "logicalAnd": torch.logical_and,
    "logicalOr": torch.logical_or,
    "logicalXor": torch.logical_xor,
}


def _binary(name: str) -> Callable[..., torch.Tensor]:
    def run(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
        if len(xs) == 1:  # comparisons against the layer's own alpha
            other = torch.tensor(getattr(p, "alpha", 0.0), dtype=xs[0].dtype)
            out = BROADCASTABLE[name](xs[0], other)
        else:
            out = BROADCASTABLE[name](xs[0], xs[1])
        return out.to(xs[0].dtype) if out.dtype == torch.bool else out  # Core ML comparisons give 0.0 / 1.0

    return run


for _name in BROADCASTABLE:
    implements(_name)(_binary(_name))


UNARY_LAYERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "ceil": torch.ceil, "floor": torch.floor, "sign": torch.sign, "round": torch.round, "exp2": torch.exp2,
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "asin": torch.asin, "acos": torch.acos, "atan": torch.atan,
    "sinh": torch.sinh, "cosh": torch.cosh, "tanh": torch.tanh, "asinh": torch.asinh, "acosh": torch.acosh, "atanh": torch.atanh,
    "erf": torch.erf, "logicalNot": lambda x: (x == 0).to(x.dtype),
}  # fmt: skip

for _name, _fn in UNARY_LAYERS.items():
    implements(_name)(lambda p, xs, fn=_fn: fn(xs[0]))


@implements("unary")
def unary(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = p.scale * xs[0] + p.shift if (p.scale != 0 or p.shift != 0) else xs[0]
    kind = enum_name(p, "type")
    if kind == "SQRT":
        return torch.sqrt(x)
    if kind == "RSQRT":
        return 1 / torch.sqrt(x + p.epsilon)
    if kind == "INVERSE":
        return 1 / (x + p.epsilon)
    if kind == "POWER":
        return torch.pow(x, p.alpha)
    if kind == "EXP":
        return torch.exp(x)
    if kind == "LOG":
        return torch.log(x + p.epsilon)
    if kind == "ABS":
        return x.abs()
    if kind == "THRESHOLD":
        return torch.clamp(x, min=p.alpha)
    raise UnsupportedLayer(f"unary function {kind}")


@implements("clip")
def clip(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.clamp(xs[0], p.minVal, p.maxVal)


@implements("clampedReLU")
def clamped_relu(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    return torch.clamp(torch.where(x >= 0, x, p.alpha * x), max=p.beta)


@implements("gelu")
def gelu(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    mode = enum_name(p, "mode")
    if mode == "SIGMOID_APPROXIMATION":
        return xs[0] * torch.sigmoid(1.702 * xs[0])
    return F.gelu(xs[0], approximate="tanh" if mode == "TANH_APPROXIMATION" else "none")


@implements("scale")
def scale(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    out = x * tensor(p.scale, _broadcast_shape(list(p.shapeScale))).to(x.dtype)
    return out + tensor(p.bias, _broadcast_shape(list(p.shapeBias))).to(x.dtype) if p.hasBias else out


@implements("bias")
def bias(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0] + tensor(p.bias, _broadcast_shape(list(p.shape))).to(xs[0].dtype)


def _broadcast_shape(shape: list[int]) -> list[int]:
    """A legacy (C,), (1, H, W) or (C, H, W) parameter shape, made to broadcast over (C, H, W)."""
    if len(shape) == 1:
        return [shape[0], 1, 1] if shape[0] != 1 else [1]
    return shape


@implements("whereBroadcastable")
def where(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.where(xs[0] != 0, xs[1], xs[2])


@implements("copy")
def copy(p: Any, xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0].clone()
