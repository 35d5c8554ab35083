"""Core ML: convert with coremltools, then stamp metadata and write the package deterministically."""

from modelbuild.targets import TARGETS
from modelbuild.targets.base import Target


@TARGETS.register
class CoreMLTarget(Target):
    name = "coreml"
    stages = ("coreml.convert", "coreml.optimize", "coreml.package")
    runtime = "coreml"
    verified = ("coreml.optimize", "model.mlpackage")
