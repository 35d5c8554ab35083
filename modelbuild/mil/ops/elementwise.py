"""Elementwise, activation, comparison and cast ops (MIL iOS15+ definitions).

Arithmetic happens in the dtype the program states: a float16 program computes in float16
on the CPU here, where the Neural Engine may accumulate differently (see docs/mil-ops.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from modelbuild.mil.args import _DTYPES, Args, dtype_named
from modelbuild.mil.registry import implements

_BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "real_div": torch.true_divide,
    "floor_div": torch.floor_divide,
    "pow": torch.pow,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "mod": torch.remainder,
    "equal": torch.eq,
    "not_equal": torch.ne,
    "less": torch.lt,
    "less_equal": torch.le,
    "greater": torch.gt,
    "greater_equal": torch.ge,
    "logical_and": torch.logical_and,
    "logical_or": torch.logical_or,
    "logical_xor": torch.logical_xor,
}

_UNARY = {
    "abs": torch.abs,
    "ceil": torch.ceil,
    "floor": torch.floor,
    "round": torch.round,
    "sign": torch.sign,
    "sqrt": torch.sqrt,
    "exp": torch.exp,
    "exp2": torch.exp2,
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "asin": torch.asin,
    "acos": torch.acos,
    "atan": torch.atan,
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "square": torch.square,
    "logical_not": torch.logical_not,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "softsign": F.softsign,
    "silu": F.silu,
    "relu6": F.relu6,
    "identity": lambda x: x,
}


def _binary(fn: Any) -> Any:
    def run(args: Args) -> torch.Tensor:
        x, y = args.tensor("x"), args.tensor("y")
        if fn is torch.true_divide and not x.is_floating_point():
            return torch.div(x, y)
        if fn is torch.floor_divide:
            return torch.div(x, y, rounding_mode="floor")
        return fn(x, y)

    return run


def _unary(fn: Any) -> Any:
    return lambda args: fn(args.tensor("x"))


for _name, _fn in _BINARY.items():
    implements(_name)(_binary(_fn))
for _name, _fn in _UNARY.items():
    implements(_name)(_unary(_fn))


@implements("rsqrt")
def rsqrt(args: Args) -> torch.Tensor:
    return torch.rsqrt(args.tensor("x") + args.value("epsilon", 1e-12))


@implements("log")
def log(args: Args) -> torch.Tensor:
    return torch.log(args.tensor("x") + args.value("epsilon", 1e-45))


@implements("inverse")
def inverse(args: Args) -> torch.Tensor:
    return 1.0 / (args.tensor("x") + args.value("epsilon", 1e-4))


@implements("clip")
def clip(args: Args) -> torch.Tensor:
    return torch.clamp(args.tensor("x"), args.value("alpha"), args.value("beta"))


@implements("threshold")
def threshold(args: Args) -> torch.Tensor:
    return torch.clamp(args.tensor("x"), min=args.value("alpha"))


@implements("gelu")
def gelu(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    mode = args.value("mode", "EXACT")
    if mode == "TANH_APPROXIMATION":
        return F.gelu(x, approximate="tanh")
    if mode == "SIGMOID_APPROXIMATION":
        return x * torch.sigmoid(1.702 * x)
    return F.gelu(x)


@implements("softmax")
def softmax(args: Args) -> torch.Tensor:
    return torch.softmax(args.tensor("x"), dim=args.value("axis", -1))


@implements("softplus")
def softplus(args: Args) -> torch.Tensor:
    return F.softplus(args.tensor("x"))


@implements("leaky_relu")
def leaky_relu(args: Args) -> torch.Tensor:
    return F.leaky_relu(args.tensor("x"), args.value("alpha", 0.01))


@implements("elu")
def elu(args: Args) -> torch.Tensor:
    return F.elu(args.tensor("x"), args.value("alpha", 1.0))


@implements("hard_sigmoid", "sigmoid_hard")
def hard_sigmoid(args: Args) -> torch.Tensor:
    # MIL: min(max(alpha * x + beta, 0), 1)
    return torch.clamp(args.value("alpha", 0.2) * args.tensor("x") + args.value("beta", 0.5), 0.0, 1.0)


@implements("prelu")
def prelu(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    alpha = args.tensor("alpha").to(x.dtype).reshape([1, -1] + [1] * (x.dim() - 2))
    return torch.where(x >= 0, x, x * alpha)


@implements("scaled_tanh")
def scaled_tanh(args: Args) -> torch.Tensor:
    return args.value("alpha", 1.0) * torch.tanh(args.value("beta", 1.0) * args.tensor("x"))


@implements("linear_activation")
def linear_activation(args: Args) -> torch.Tensor:
    return args.value("alpha", 1.0) * args.tensor("x") + args.value("beta", 0.0)


@implements("thresholded_relu")
def thresholded_relu(args: Args) -> torch.Tensor:
    x = args.tensor("x")
    return torch.where(x >= args.value("alpha", 1.0), x, torch.zeros_like(x))


@implements("cast")
def cast(args: Args) -> torch.Tensor:
    dtype = args.value("dtype")
    target = dtype_named(dtype) if dtype in _DTYPES else torch.float32
    x = args.tensor("x")
    if not target.is_floating_point and x.is_floating_point():
        x = torch.trunc(x)  # MIL casts float to int toward zero
    return x.to(target)


@implements("select")
def select(args: Args) -> torch.Tensor:
    a, b = args.tensor("a"), args.tensor("b")
    return torch.where(args.tensor("cond").bool(), a, b.to(a.dtype) if a.dtype != b.dtype else b)
