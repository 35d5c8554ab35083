"""Calibration that does not depend on the CPU's float kernels."""

from __future__ import annotations

import numpy as np
import pytest

from modelbuild.quantize.onnx_int8 import round_outward


def test_ranges_are_rounded_outward_to_ten_significant_bits() -> None:
    low = np.array([-3.3, 0.1234567, 0.0, -1e-8], dtype=np.float32)
    high = np.array([3.3, 0.1234567, 0.0, 1e-8], dtype=np.float32)
    rounded_low, rounded_high = round_outward(low, up=False), round_outward(high, up=True)
    assert rounded_low.dtype == np.float32 and rounded_high.dtype == np.float32
    assert np.all(rounded_low <= low) and np.all(rounded_high >= high)  # never narrower: nothing newly clipped
    assert np.all(np.abs(rounded_high - high) <= np.abs(high) * 2.0**-9)
    assert rounded_low[2] == 0.0 and rounded_high[2] == 0.0


def test_a_last_bit_difference_gives_the_same_range() -> None:
    """What two CPUs' kernels produce for the same activation: one ulp apart."""
    rng = np.random.default_rng(0)
    values = rng.uniform(0.01, 100.0, size=1000).astype(np.float32)
    nudged = np.nextafter(values, np.float32(np.inf))
    same = np.mean(round_outward(values, up=True) == round_outward(nudged, up=True))
    assert same > 0.99  # a flip needs the range within one ulp of a grid step


@pytest.mark.convert
def test_pt2e_calibration_runs_in_float64_and_returns_a_float32_graph() -> None:
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from modelbuild.quantize.pt2e import calibrate_in_float64

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
    example = (torch.randn(1, 4),)
    graph = torch.export.export(model, example, strict=False).module()
    observed = prepare_pt2e(graph, XNNPACKQuantizer().set_global(get_symmetric_quantization_config()))
    seen: list[torch.dtype] = []
    handle = observed.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    calibrate_in_float64(observed, [[torch.randn(1, 4)] for _ in range(3)])
    handle.remove()
    assert seen == [torch.float64] * 3
    floats = [t for t in list(observed.parameters()) + list(observed.buffers()) if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 for t in floats)


@pytest.mark.convert
def test_static_onnx_quantisation_uses_the_settled_ranges(tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from modelbuild.quantize import onnx_int8

    weight = numpy_helper.from_array(np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    src, dst = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    samples = [{"x": np.full((1, 8), 0.3333, dtype=np.float32)}]
    onnx_int8.quantize(src, dst, "static", per_channel=False, calibration=samples)
    scales = {t.name: numpy_helper.to_array(t) for t in onnx.load(dst).graph.initializer if t.name.endswith("_scale")}
    input_scale = float(scales["x_scale"])
    # MinMax on one sample of 0.3333: the range [0, 0.3333] rounded outward to 10 bits is
    # [0, 0.33349609375]; the activation's int8 scale spans it in 255 steps.
    assert input_scale == pytest.approx(0.33349609375 / 255, rel=1e-6)
    assert input_scale != pytest.approx(np.float32(0.3333) / 255, rel=1e-6)  # not the raw range
