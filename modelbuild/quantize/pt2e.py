"""PT2E static int8 quantisation for the XNNPACK backend (executorch 1.5.1, torchao).

export → ``prepare_pt2e`` with ``XNNPACKQuantizer`` (symmetric, per-channel weights) →
calibrate (in float64, so the scales do not depend on the CPU's kernels) → ``convert_pt2e`` → export again with the same dynamic shapes, ready for
``to_edge_transform_and_lower``. ``torch.export.export_for_training`` is gone in torch 2.13:
``export(...).module()`` is the training-IR graph the quantiser wants (ExecuTorch's own
export stages do the same). Dynamic dimensions survive.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from modelbuild.quantize.keep_float import KeepFloat


def quantize_for_xnnpack(
    module: Any,
    example: tuple,
    dynamic_shapes: Any,
    calibration: list[list[Any]],
    per_channel: bool,
    mode: str = "static",
    keep_float: Sequence[str] = (),
) -> Any:
    """``mode``: static (weights and activations int8, activations calibrated) or dynamic
    (XNNPACK's dynamically quantised linear path: int8 weights, activations quantised per run,
    Linear layers only, the transformer recipe). Operators inside modules that ``keep_float``
    matches are left float (the quantiser's filter); keep_float.Unmatched when a pattern matches none."""
    logging.getLogger("torchao").setLevel(logging.ERROR)  # missing CUDA kernels are not news on a CPU build
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(module.eval(), example, dynamic_shapes=dynamic_shapes, strict=False).module()
    if mode == "dynamic":
        config = get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=True)
        quantizer = XNNPACKQuantizer().set_module_type(torch.nn.Linear, config)
    else:
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    if keep_float:
        keep = KeepFloat(keep_float)
        kept = {node.name for node in graph.graph.nodes if keep.keeps(path for path, _ in node.meta.get("nn_module_stack", {}).values())}
        keep.check()
        quantizer.set_filter_function(lambda node: node.name not in kept)
    observed = prepare_pt2e(graph, quantizer)
    calibrate_in_float64(observed, calibration)
    # The converted graph takes its inputs as flat positional arguments (inputs_0, …): give
    # their dynamic shapes by position.
    positional = tuple(dynamic_shapes["inputs"]) if isinstance(dynamic_shapes, dict) else dynamic_shapes
    return torch.export.export(convert_pt2e(observed), example, dynamic_shapes=positional, strict=False)


def calibrate_in_float64(observed: Any, calibration: list[list[Any]]) -> None:
    """Run the calibration samples through the observed graph in float64, then return it to
    float32.

    The observers' ranges decide the int8 scales, which are bytes of the program. In float32
    they inherit the last-bit differences of the CPU's kernels (AVX2 and AVX-512 accumulate
    convolutions in another order), so two machines would write two programs. In float64 those
    differences sit around 1e-16, far below what survives the rounding of each range to the
    float32 the scales are stored in: every machine observes the same ranges.
    """
    import torch

    observed.double()
    with torch.no_grad():
        for sample in calibration:
            observed(*[t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in sample])
    observed.float()
