"""ONNX: the torch 2.13 (dynamo) exporter, checked by onnx.checker, run by ONNX Runtime."""

from modelbuild.targets import TARGETS
from modelbuild.targets.base import Target


@TARGETS.register
class OnnxTarget(Target):
    name = "onnx"
    stages = ("onnx.export", "onnx.package")
    verified = ("onnx.export", "model.onnx")
    runtime = "onnxruntime"
