"""XNNPACK's dynamically quantised Linear path: int8 weights, activations quantised per run."""

from __future__ import annotations

import pytest

pytest.importorskip("executorch")

import torch  # noqa: E402

from modelbuild.quantize.pt2e import quantize_for_xnnpack  # noqa: E402


def test_dynamic_mode_quantises_the_linear_layers_only_and_stays_close() -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 8)).eval()
    x = torch.randn(4, 32)
    program = quantize_for_xnnpack(model, (x,), None, [[torch.randn(4, 32)] for _ in range(4)], per_channel=True, mode="dynamic")
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert any("choose_qparams" in op for op in ops), ops  # activations get their scale at run time
    buffer = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    loaded = Runtime.get().load_program(buffer)  # reads the bytes in place: both stay referenced
    got = loaded.load_method("forward").execute([x])[0]
    assert torch.allclose(got, model(x), atol=0.05)
