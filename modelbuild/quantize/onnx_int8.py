"""int8 ONNX models with ``onnxruntime.quantization``; the bytes are a function of the float
model and the calibration samples (measured: identical across processes).

* dynamic: weights int8, activations quantised at run time. Only MatMul/Gemm: a dynamically
  quantised Conv becomes ``ConvInteger``, measured 8× slower than float on ORT's CPU kernels.
* static: QDQ format, per-channel weights, MinMax calibration on the given samples, the
  observed ranges rounded outward (``settled_ranges``) so that ORT's per-CPU kernels do not
  decide the scales.

``quant_pre_process`` runs shape inference only (``skip_optimization``): ORT's graph
optimiser would tie the artifact's bytes to the ORT version and adds nothing after the
dynamo exporter, which already folds batch norms.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence


def quantize(src: Path, dst: Path, mode: str, per_channel: bool, calibration: list[dict[str, Any]], keep_float: Sequence[str] = ()) -> None:
    """Raises keep_float.Unmatched when a ``keep_float`` pattern matches no module of the graph."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Samples(CalibrationDataReader):
        def __init__(self) -> None:
            self.samples = iter(calibration)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.samples, None)

    with tempfile.TemporaryDirectory() as scratch:
        pre, out = Path(scratch) / "pre.onnx", Path(scratch) / "int8.onnx"
        quant_pre_process(str(src), str(pre), skip_optimization=True)
        excluded = float_nodes(onnx.load(str(pre)), keep_float) if keep_float else []  # read the graph again only when asked
        if mode == "dynamic":
            quantize_dynamic(
                str(pre),
                str(out),
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                op_types_to_quantize=["MatMul", "Gemm"],
                nodes_to_exclude=excluded,
            )
        else:
            with settled_ranges():
                quantize_static(
                    str(pre),
                    str(out),
                    Samples(),
                    quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=excluded,
                )
        model = onnx.load(str(out))
    dst.write_bytes(model.SerializeToString(deterministic=True))


def float_nodes(model: Any, patterns: Sequence[str]) -> list[str]:
    """The nodes inside modules ``patterns`` keep float, found by the module scopes the torch
    exporter writes into each node (``pkg.torch.onnx.name_scopes``)."""
    import ast

    from modelbuild.quantize.keep_float import KeepFloat

    keep = KeepFloat(patterns)
    if not keep:
        return []
    excluded = []
    for node in model.graph.node:
        scopes = next((entry.value for entry in node.metadata_props if entry.key == "pkg.torch.onnx.name_scopes"), None)
        if scopes is not None and keep.keeps(ast.literal_eval(scopes)):
            excluded.append(node.name)
    keep.check()
    return excluded


RANGE_BITS = 10  # ranges rounded outward to 10 significant bits: 0.1% wider at most


def round_outward(values: Any, up: bool) -> Any:
    """Round each value away from the range's inside onto a grid of RANGE_BITS significant
    bits, keeping the dtype."""
    import numpy as np

    array = np.asarray(values)
    wide = array.astype(np.float64)
    _, exponent = np.frexp(wide)
    step = np.ldexp(1.0, exponent - RANGE_BITS)
    rounded = (np.ceil(wide / step) if up else np.floor(wide / step)) * step
    return np.where(wide == 0, 0.0, rounded).astype(array.dtype)


@contextlib.contextmanager
def settled_ranges() -> Iterator[None]:
    """ONNX Runtime calibrates by running the float model on its CPU kernels, which (like
    torch's) pick their instruction set per machine and differ in the last bits. The observed
    ranges are rounded outward before they become scales, so a last-bit difference changes a
    scale only when a range lies within about 1e-7 of a grid step (about one chance in ten
    thousand per tensor), instead of always."""
    import importlib

    # importlib: the package exports a function named ``quantize`` that hides the module.
    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")
    create = ort_quantize.create_calibrator

    def create_settled(*args: Any, **kwargs: Any) -> Any:
        calibrator = create(*args, **kwargs)
        compute = calibrator.compute_data

        def compute_settled() -> Any:
            data = compute()
            for name, tensor in list(data.items()):
                if hasattr(tensor, "lowest") and hasattr(tensor, "highest"):
                    tensor.lowest = round_outward(tensor.lowest, up=False)
                    tensor.highest = round_outward(tensor.highest, up=True)
                    data[name] = tensor
            return data

        calibrator.compute_data = compute_settled
        return calibrator

    ort_quantize.create_calibrator = create_settled  # type: ignore[attr-defined]
    try:
        yield
    finally:
        ort_quantize.create_calibrator = create  # type: ignore[attr-defined]
