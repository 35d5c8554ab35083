"""TorchScript: the captured module as ``.pt`` (and ``.ptl`` for the lite interpreter)."""

from modelbuild.targets import TARGETS
from modelbuild.targets.base import Target


@TARGETS.register
class TorchScriptTarget(Target):
    name = "torchscript"
    stages = ("torchscript.export",)
    runtime = "torchscript"
    options = {"lite": {"type": "boolean", "description": "also save a .ptl for the PyTorch lite interpreter"}}
    defaults = {"lite": False}
