"""The ExecuTorch delegation report, and the decompositions that raise its share: measured on
a reflection-padded, instance-normalised block like the generator example."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("executorch")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from modelbuild.delegation.executorch import executorch_delegation  # noqa: E402
from modelbuild.delegation.report import Delegation, LeftOut, from_json  # noqa: E402
from modelbuild.targets.executorch import DECOMPOSE  # noqa: E402
from modelbuild.torch_side.xnnpack_friendly import DECOMPOSITIONS, make_friendly  # noqa: E402


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, 8, 7), nn.InstanceNorm2d(8, affine=True), nn.ReLU(), nn.ReflectionPad2d((1, 2, 0, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * 2.0


def _lowered(switches: dict[str, bool] | None, dynamic: bool = False) -> tuple[object, Delegation]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model = Block().eval()
    shapes = ({2: torch.export.Dim("h", min=16, max=64), 3: torch.export.Dim("w", min=16, max=64)},) if dynamic else None
    program = torch.export.export(model, (torch.rand(1, 3, 24, 32),), dynamic_shapes=shapes, strict=False)
    if switches is not None:
        program = make_friendly(program, switches)
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    return edge, executorch_delegation(edge.exported_program(), "xnnpack")


def test_the_default_lowering_leaves_padding_and_norm_outside_and_the_report_names_them() -> None:
    _, report = _lowered(None)
    assert report.low() and report.partitions >= 2
    left = {item.op: item for item in report.left_out}
    assert "aten.index.Tensor" in left or "aten.abs" in left  # the arange/abs/index chain of reflection padding
    assert any("(ReflectionPad2d)" in where for item in report.left_out for where in item.where)
    assert 0 < report.flops_share <= 1 and report.flops_delegated <= report.flops_total
    assert "of operators" in report.sentence() and "outside it:" in report.sentence()


def test_the_decompositions_put_the_block_in_one_partition_with_the_same_numbers() -> None:
    edge, report = _lowered({})
    assert report.partitions == 1 and not report.left_out and not report.low(), report.sentence()
    from executorch.runtime import Runtime

    x = torch.rand(1, 3, 24, 32)
    buffer = edge.to_executorch().buffer  # type: ignore[attr-defined]
    program = Runtime.get().load_program(buffer)  # the runtime reads the bytes in place: both stay referenced
    got = program.load_method("forward").execute([x])[0]
    assert torch.allclose(got, Block().eval()(x), atol=1e-4)


def test_each_decomposition_can_be_switched_off() -> None:
    _, without_padding = _lowered({"reflection_pad": False})
    _, without_norm = _lowered({"instance_norm": False})
    assert any("(ReflectionPad2d)" in w for item in without_padding.left_out for w in item.where)
    assert not any("(ReflectionPad2d)" in w for item in without_norm.left_out for w in item.where)
    assert any("(InstanceNorm2d)" in w for item in without_norm.left_out for w in item.where)


def test_flexible_sizes_keep_the_decomposed_block_mostly_delegated() -> None:
    """XNNPACK takes no slice of a dynamic tensor: with flexible H and W the one-row slices stay
    outside (and the report says so), the convolution and the norm stay in."""
    edge, report = _lowered({}, dynamic=True)
    assert report.flops_share > 0.95
    assert {item.op for item in report.left_out} <= {"aten.slice_copy.Tensor"}
    # Making the report asked no symbolic size for a number: the program still takes every
    # size (an int() of a size had pinned the GPT example to its sample's shape).
    from executorch.runtime import Runtime

    buffer = edge.to_executorch().buffer  # type: ignore[attr-defined]
    program = Runtime.get().load_program(buffer)  # the runtime reads the bytes in place: both stay referenced
    method = program.load_method("forward")
    for h, w in ((16, 16), (60, 64)):
        x = torch.rand(1, 3, h, w)
        assert torch.allclose(method.execute([x])[0], Block().eval()(x), atol=1e-4)


def test_switch_names_match_and_reports_round_trip() -> None:
    assert set(DECOMPOSE) == set(DECOMPOSITIONS)
    report = Delegation("executorch", "xnnpack", 10, 9, 100.0, 99.0, 2, [LeftOut("aten.abs", 1, ["pad (ReflectionPad2d)"])])
    assert from_json(report.to_json()) == report


def test_a_negative_reflection_pad_crops_as_torch_does() -> None:
    """The adversarial case: the rewrite ignored negative pads, so a border pixel that torch
    crops away reached a max, and a program that did not crop passed both seeded samples."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    class CropMax(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            cropped = nn.functional.pad(x, (-1, 2, 1, -2), mode="reflect")
            return torch.cat([cropped.flatten(2), cropped.amax(dim=(2, 3), keepdim=True).flatten(2)], dim=2)

    x = torch.rand(1, 3, 8, 8)
    x[0, :, 0, 3] = 5.0  # on the row torch crops away
    model = CropMax().eval()
    program = make_friendly(torch.export.export(model, (x,), strict=False), {})
    buffer = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    got = Runtime.get().load_program(buffer).load_method("forward").execute([x])[0]
    assert got.shape == model(x).shape and torch.equal(got, model(x))


def test_nearest_upsampling_by_whole_factors_becomes_copies_exactly() -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(scale_factor=(2, 3), mode="nearest")).eval()
    x = torch.rand(1, 3, 8, 10)
    program = torch.export.export(model, (x,), strict=False)
    reports = {}
    for name, switches in (("off", {"nearest_upsample": False}), ("on", {})):
        edge = to_edge_transform_and_lower(make_friendly(program, switches), partitioner=[XnnpackPartitioner()])
        reports[name] = executorch_delegation(edge.exported_program(), "xnnpack")
        buffer = edge.to_executorch().buffer
        loaded = Runtime.get().load_program(buffer)  # reads the bytes in place: both stay referenced
        out = loaded.load_method("forward").execute([x])[0]
        assert torch.equal(out, out[..., ::2, ::3].repeat_interleave(2, dim=-2).repeat_interleave(3, dim=-1))  # copies, bit for bit
        assert torch.allclose(out, model(x), atol=1e-5)  # the conv rounds; the copies add nothing
    assert "aten.upsample_nearest2d.vec" in {item.op for item in reports["off"].left_out}
    assert {item.op for item in reports["on"].left_out} <= {"aten.full"}  # the ones; multiplications and reshapes inside XNNPACK
    assert reports["on"].share > reports["off"].share


def _assert_rows_selected_into_the_output(report: Delegation, written: Any) -> None:
    """What the nearest-upsampling decomposition leaves outside XNNPACK: the ones, the rows to
    select and plain copies, never arithmetic on pixels; and the program's output is written by
    the row selection itself, not by a copy of a reshape."""
    (written,) = written
    left = {item.op for item in report.left_out}
    assert "aten.upsample_nearest2d.vec" not in left and "aten.mul.Tensor" not in left
    assert left <= {"aten.view_copy", "aten.full", "aten.arange.start_step", "aten.div.Tensor_mode", "aten.index_select"}, left
    assert "index_select" in str(written.target)


def test_nearest_upsampling_at_flexible_sizes_repeats_inside_xnnpack_exactly() -> None:
    """XNNPACK reshapes at most one flexible dimension (the segmenter example's lowering once
    failed on that), and ExecuTorch's portable nearest kernel made the segmenter slower than
    eager: the width's repetition is a delegated multiplication by ones between plain reshapes,
    the height's a row selection that writes the program's output."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(scale_factor=(2, 3), mode="nearest")).eval()
    shapes = ({2: torch.export.Dim("h", min=8, max=64), 3: torch.export.Dim("w", min=8, max=64)},)
    program = torch.export.export(model, (torch.rand(1, 3, 16, 16),), dynamic_shapes=shapes, strict=False)
    reports, outputs = {}, {}
    for name, switches in (("off", {"nearest_upsample": False}), ("on", {})):
        edge = to_edge_transform_and_lower(make_friendly(program, switches), partitioner=[XnnpackPartitioner()])
        reports[name] = executorch_delegation(edge.exported_program(), "xnnpack")
        outputs[name] = edge.exported_program().graph.output_node().args[0]
        buffer = edge.to_executorch().buffer
        method = Runtime.get().load_program(buffer).load_method("forward")
        for size in ((16, 16), (24, 40), (9, 13)):
            x = torch.rand(1, 3, *size)
            out = method.execute([x])[0]
            assert out.shape == (1, 4, 2 * size[0], 3 * size[1])
            cells = out[..., ::2, ::3]
            assert torch.equal(out, cells.repeat_interleave(2, dim=-2).repeat_interleave(3, dim=-1))  # copies, bit for bit
            assert torch.allclose(out, model(x), atol=1e-5)  # the conv rounds; the copies add nothing
    assert "aten.upsample_nearest2d.vec" in {item.op for item in reports["off"].left_out}
    _assert_rows_selected_into_the_output(reports["on"], outputs["on"])
    assert reports["on"].flops_share > reports["off"].flops_share
