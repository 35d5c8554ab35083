"""Control flow (cond, while_loop) and the classifier head. Blocks run through the same
evaluator as the function, so ops inside them need no special support."""

from __future__ import annotations

from typing import Any

import torch

from modelbuild.mil.args import Args
from modelbuild.mil.registry import implements


@implements("cond")
def cond(args: Args) -> Any:
    from modelbuild.mil.program import run_block

    branch = args.op.blocks[0] if bool(args.tensor("pred").item()) else args.op.blocks[1]
    outputs = run_block(branch, args.env, [])
    return tuple(outputs) if len(outputs) > 1 else outputs[0]


@implements("while_loop")
def while_loop(args: Args) -> Any:
    from modelbuild.mil.program import run_block

    values = args.tensors("loop_vars")
    condition, body = args.op.blocks[0], args.op.blocks[1]
    for _ in range(1_000_000):
        if not bool(run_block(condition, args.env, values)[0].item()):
            break
        values = run_block(body, args.env, values)
    else:
        raise RuntimeError("while_loop ran a million iterations")
    return tuple(values) if len(values) > 1 else values[0]


@implements("classify")
def classify(args: Args) -> tuple[Any, Any]:
    """Core ML returns the top label and a label → probability dictionary; the executor returns
    the label and the probabilities as a tensor in label order (what verification compares)."""
    probabilities = args.tensor("probabilities")
    classes = args.value("classes")
    top = int(torch.argmax(probabilities.reshape(-1)).item())
    return classes[top], probabilities.reshape(1, -1)
