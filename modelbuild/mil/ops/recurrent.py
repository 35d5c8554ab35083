"""Recurrent layers (MIL lstm, gru, rnn), unrolled over the sequence with torch cell math.

MIL keeps gates in input, forget, output, cell order ("ifoz"); x is [seq, batch, input].
"""

from __future__ import annotations

from typing import Any

import torch

from modelbuild.mil.args import Args
from modelbuild.mil.registry import implements

_ACT = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "scaled_tanh": torch.tanh,
    "sigmoid_hard": lambda x: torch.clamp(0.2 * x + 0.5, 0, 1),
    "linear": lambda x: x,
}


def _lstm_direction(
    x: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    bias: torch.Tensor | None,
    acts: tuple,
    reverse: bool,
    clip: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    recurrent, cell_act, act = acts
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    outputs: list[Any] = [None] * x.shape[0]
    for t in steps:
        gates = x[t] @ w_ih.T + h @ w_hh.T + (bias if bias is not None else 0)
        i, f, o, z = gates.chunk(4, dim=-1)
        if clip is not None:
            i, f, o, z = (g.clamp(-clip, clip) for g in (i, f, o, z))
        c = recurrent(f) * c + recurrent(i) * cell_act(z)
        h = recurrent(o) * act(c)
        outputs[t] = h
    return torch.stack(outputs), h, c


@implements("lstm")
def lstm(args: Args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = args.tensor("x")
    h0, c0 = args.tensor("initial_h"), args.tensor("initial_c")
    hidden = args.tensor("weight_hh").shape[-1]
    acts = tuple(
        _ACT[args.value(name, default)] for name, default in (("recurrent_activation", "sigmoid"), ("cell_activation", "tanh"), ("activation", "tanh"))
    )
    clip = args.value("clip")
    direction = args.value("direction", "forward")
    forward_h, forward_c = h0[..., :hidden], c0[..., :hidden]
    seq, h, c = _lstm_direction(
        x, forward_h, forward_c, args.tensor("weight_ih"), args.tensor("weight_hh"), args.optional("bias"), acts, direction == "reverse", clip
    )
    if direction == "bidirectional":
        seq_b, h_b, c_b = _lstm_direction(
            x, h0[..., hidden:], c0[..., hidden:], args.tensor("weight_ih_back"), args.tensor("weight_hh_back"), args.optional("bias_back"), acts, True, clip
        )
        seq, h, c = torch.cat([seq, seq_b], -1), torch.cat([h, h_b], -1), torch.cat([c, c_b], -1)
    output = seq if args.value("output_sequence", False) else (seq[-1:] if direction != "reverse" else seq[:1])
    return output, h, c


@implements("gru")
def gru(args: Args) -> tuple[torch.Tensor, torch.Tensor]:
    """MIL gru: gates in reset, update, new order ("rzo")."""
    x, h = args.tensor("x"), args.tensor("initial_h")
    w_ih, w_hh, bias = args.tensor("weight_ih"), args.tensor("weight_hh"), args.optional("bias")
    recurrent = _ACT[args.value("recurrent_activation", "sigmoid")]
    act = _ACT[args.value("activation", "tanh")]
    reverse = args.value("direction", "forward") == "reverse"
    outputs: list[Any] = [None] * x.shape[0]
    b = bias if bias is not None else torch.zeros(w_ih.shape[0], dtype=x.dtype)
    b_r, b_z, b_o = b.chunk(3)
    w_r, w_z, w_o = w_ih.chunk(3)
    r_r, r_z, r_o = w_hh.chunk(3)
    for t in range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0]):
        xt = x[t]
        z = recurrent(xt @ w_z.T + h @ r_z.T + b_z)
        r = recurrent(xt @ w_r.T + h @ r_r.T + b_r)
        o = act(xt @ w_o.T + (r * h) @ r_o.T + b_o)
        h = (1 - z) * o + z * h
        outputs[t] = h
    seq = torch.stack(outputs)
    return (seq if args.value("output_sequence", False) else seq[-1:]), h


@implements("rnn")
def rnn(args: Args) -> tuple[torch.Tensor, torch.Tensor]:
    x, h = args.tensor("x"), args.tensor("initial_h")
    w_ih, w_hh, bias = args.tensor("weight_ih"), args.tensor("weight_hh"), args.optional("bias")
    act = _ACT[args.value("activation", "tanh")]
    reverse = args.value("direction", "forward") == "reverse"
    outputs: list[Any] = [None] * x.shape[0]
    for t in range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0]):
        h = act(x[t] @ w_ih.T + h @ w_hh.T + (bias if bias is not None else 0))
        outputs[t] = h
    seq = torch.stack(outputs)
    return (seq if args.value("output_sequence", False) else seq[-1:]), h
