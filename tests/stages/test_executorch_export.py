"""What the executorch.export stage asks of ExecuTorch beyond lowering: who owns the inputs."""

from __future__ import annotations

import pytest

pytest.importorskip("executorch")

import torch  # noqa: E402

from modelbuild.stages.executorch_export import _backend_config, inputs_to_plan  # noqa: E402


class WritesItsInput(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(2)
        return x + 1


class ReturnsItsInput(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x * 3


def _program(planned: bool, model: torch.nn.Module | None = None) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(0)
    model = model or torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    program = torch.export.export(model, (torch.rand(1, 3, 8, 8),), strict=False)
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    return edge.to_executorch(_backend_config({"planned_inputs": planned}, inputs_to_plan(edge))).buffer


def _input_planned(buffer: bytes) -> bool:
    from executorch.exir._serialize._program import deserialize_pte_binary

    loaded = deserialize_pte_binary(buffer)
    plan = getattr(loaded, "program", loaded).execution_plan[0]
    (index,) = plan.inputs
    return plan.values[index].val.allocation_info is not None


def test_inputs_are_the_caller_s_by_default_and_planned_on_request() -> None:
    """Unplanned, ExecuTorch reads the caller's tensor in place instead of copying it into the
    program's memory at every call; both programs compute the same numbers."""
    from executorch.runtime import Runtime

    default, planned = _program(False), _program(True)
    assert not _input_planned(default) and _input_planned(planned)
    x = torch.rand(1, 3, 8, 8)
    kept = x.clone()
    outputs = []
    for buffer in (default, planned):
        program = Runtime.get().load_program(buffer)  # reads the bytes in place: the buffer stays referenced
        outputs.append(program.load_method("forward").execute([x])[0])
    assert torch.equal(outputs[0], outputs[1])
    assert torch.equal(x, kept)  # read, never written


@pytest.mark.parametrize(
    ("model", "expected"),
    [(WritesItsInput(), lambda x: x * 2 + 1), (ReturnsItsInput(), lambda x: x)],
    ids=["writes-into-its-input", "returns-its-input"],
)
def test_a_model_that_writes_into_or_returns_its_input_keeps_it_planned_and_computes_right(model: torch.nn.Module, expected: object) -> None:
    """ExecuTorch 1.5.1 read zeros from an unplanned input in both: ``x.mul_(2); x + 1`` gave
    1.0 everywhere, ``return x`` gave zeros. Planned, both are right."""
    from executorch.runtime import Runtime

    buffer = _program(False, model)
    assert _input_planned(buffer)
    x = torch.rand(1, 3, 8, 8)
    program = Runtime.get().load_program(buffer)
    outputs = program.load_method("forward").execute([x.clone()])
    index = -1 if isinstance(model, WritesItsInput) else 0
    assert torch.allclose(outputs[index], expected(x))  # type: ignore[operator]
