"""ExecuTorch: torch.export, lowered to a delegate (XNNPACK by default), a ``.pte`` program."""

from modelbuild.targets import TARGETS
from modelbuild.targets.base import Target


@TARGETS.register
class ExecuTorchTarget(Target):
    name = "executorch"
    stages = ("executorch.export",)
    runtime = "executorch"
