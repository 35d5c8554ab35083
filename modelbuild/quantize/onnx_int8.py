"""int8 ONNX models with ``onnxruntime.quantization``; the bytes are a function of the float
model and the calibration samples (measured: identical across processes).

* dynamic: weights int8, activations quantised at run time. Only MatMul/Gemm: a dynamically
  quantised Conv becomes ``ConvInteger``, measured 8× slower than float on ORT's CPU kernels.
* static: QDQ format, per-channel weights, MinMax calibration on the given samples.

``quant_pre_process`` runs shape inference only (``skip_optimization``): ORT's graph
optimiser would tie the artifact's bytes to the ORT version and adds nothing after the
dynamo exporter, which already folds batch norms.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def quantize(src: Path, dst: Path, mode: str, per_channel: bool, calibration: list[dict[str, Any]]) -> None:
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
        if mode == "dynamic":
            quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=per_channel, op_types_to_quantize=["MatMul", "Gemm"])
        else:
            quantize_static(str(pre), str(out), Samples(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        model = onnx.load(str(out))
    dst.write_bytes(model.SerializeToString(deterministic=True))
