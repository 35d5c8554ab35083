"""ONNX: the torch 2.13 (dynamo) exporter, checked by onnx.checker, run by ONNX Runtime."""

from modelbuild.targets import TARGETS
from modelbuild.targets.base import FIXED_SHAPES, Target, fold_input_scale, int8_quantize


@TARGETS.register
class OnnxTarget(Target):
    """ONNX: a .onnx file from torch's dynamo exporter, checked by onnx.checker, run by ONNX Runtime."""

    name = "onnx"
    stages = ("onnx.export", "onnx.package")
    verified = ("onnx.export", "model.onnx")
    runtime = "onnxruntime"
    options = {
        "opset": {"type": "integer", "minimum": 7, "description": "the ONNX opset the model is exported at"},
        "fixed_shapes": FIXED_SHAPES,
        "fold_input_scale": fold_input_scale("float files"),
        "quantize": int8_quantize(
            "int8 quantisation with onnxruntime.quantization",
            mode={"enum": ["dynamic", "static"], "description": "dynamic (weights only; activations at run time) or static (calibrated QDQ)"},
        ),
    }
    defaults = {"opset": 18, "fixed_shapes": False, "fold_input_scale": True}
    table_defaults = {"quantize": {"dtype": "int8", "mode": "dynamic", "per_channel": True, "calibration_samples": 16}}
