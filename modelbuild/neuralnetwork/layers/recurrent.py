"""Core ML's uni- and bi-directional LSTM and GRU layers (rank-5: (Seq, B, input, 1, 1))."""

from __future__ import annotations

from typing import Any, Callable

import torch

from modelbuild.neuralnetwork.registry import implements
from modelbuild.neuralnetwork.weights import UnsupportedLayer, tensor

_ACT: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "ReLU": torch.relu,
                                                           "linear": lambda x: x}  # fmt: skip


def _activation(params: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    kind = params.WhichOneof("NonlinearityType")
    if kind == "sigmoidHard":
        return lambda x: torch.clamp(params.sigmoidHard.alpha * x + params.sigmoidHard.beta, 0, 1)
    if kind == "scaledTanh":
        return lambda x: params.scaledTanh.alpha * torch.tanh(params.scaledTanh.beta * x)
    if kind not in _ACT:
        raise UnsupportedLayer(f"recurrent activation {kind}")
    return _ACT[kind]


def _sequence(x: torch.Tensor, size: int) -> torch.Tensor:
    """(Seq, B, size) from Core ML's (Seq, B, size, 1, 1)."""
    return x.reshape(x.shape[0], -1, size)


def _lstm(w: Any, p: Any, acts: list[Any], x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, hidden: int, size: int, reverse: bool) -> tuple:
    gate = lambda name, cols: tensor(getattr(w, name), (hidden, cols)).to(x.dtype)  # noqa: E731
    prefixes = ("inputGate", "forgetGate", "blockInput", "outputGate")
    w_x = [gate(f"{g}WeightMatrix", size) for g in prefixes]
    w_h = [gate(f"{g}RecursionMatrix", hidden) for g in prefixes]
    zero = torch.zeros(hidden, dtype=x.dtype)
    names = ("inputGateBiasVector", "forgetGateBiasVector", "blockInputBiasVector", "outputGateBiasVector")
    biases = [tensor(getattr(w, n)).to(x.dtype) if p.hasBiasVectors else zero for n in names]
    if p.forgetBias and not p.hasBiasVectors:
        biases[1] = biases[1] + 1
    peep = [tensor(getattr(w, f"{g}GatePeepholeVector")).to(x.dtype) if p.hasPeepholeVectors else zero for g in ("input", "forget", "output")]
    gate_act, cell_act, out_act = (_activation(a) for a in acts)
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    outputs = [torch.zeros(0)] * x.shape[0]
    for t in steps:
        xt = x[t]
        i = gate_act(xt @ w_x[0].T + h @ w_h[0].T + biases[0] + peep[0] * c)
        f = 1 - i if p.coupledInputAndForgetGate else gate_act(xt @ w_x[1].T + h @ w_h[1].T + biases[1] + peep[1] * c)
        z = cell_act(xt @ w_x[2].T + h @ w_h[2].T + biases[2])
        c = f * c + i * z
        if p.cellClipThreshold:
            c = c.clamp(-p.cellClipThreshold, p.cellClipThreshold)
        o = gate_act(xt @ w_x[3].T + h @ w_h[3].T + biases[3] + peep[2] * c)
        h = o * out_act(c)
        outputs[t] = h
    return torch.stack(outputs), h, c


@implements("uniDirectionalLSTM")
def uni_lstm(p: Any, xs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    hidden, size = p.outputVectorSize, p.inputVectorSize
    x = _sequence(xs[0], size)
    batch = x.shape[1]
    h = xs[1].reshape(batch, hidden) if len(xs) > 1 else torch.zeros(batch, hidden, dtype=x.dtype)
    c = xs[2].reshape(batch, hidden) if len(xs) > 2 else torch.zeros(batch, hidden, dtype=x.dtype)
    seq, h, c = _lstm(p.weightParams, p.params, list(p.activations), x, h, c, hidden, size, p.reverseInput)
    out = seq if p.params.sequenceOutput else h.unsqueeze(0)
    return out.reshape(*out.shape, 1, 1), h.reshape(1, batch, hidden, 1, 1), c.reshape(1, batch, hidden, 1, 1)


@implements("biDirectionalLSTM")
def bi_lstm(p: Any, xs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    hidden, size = p.outputVectorSize, p.inputVectorSize
    x = _sequence(xs[0], size)
    batch = x.shape[1]
    states = [xs[i].reshape(batch, hidden) if len(xs) > i else torch.zeros(batch, hidden, dtype=x.dtype) for i in range(1, 5)]
    fwd, hf, cf = _lstm(p.weightParams[0], p.params, list(p.activationsForwardLSTM), x, states[0], states[1], hidden, size, False)
    bwd, hb, cb = _lstm(p.weightParams[1], p.params, list(p.activationsBackwardLSTM), x, states[2], states[3], hidden, size, True)
    if p.params.sequenceOutput:
        out = torch.cat([fwd, bwd], dim=-1)
    else:
        out = torch.cat([hf, hb], dim=-1).unsqueeze(0)
    shaped = [s.reshape(1, batch, hidden, 1, 1) for s in (hf, cf, hb, cb)]
    return (out.reshape(*out.shape, 1, 1), *shaped)
