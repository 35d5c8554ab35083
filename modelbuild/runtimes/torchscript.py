"""TorchScript: ``torch.jit.load`` of the saved ``.pt``, as an app's libtorch would load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelbuild.runtimes import RUNTIMES
from modelbuild.runtimes.base import TorchModuleRuntime


@RUNTIMES.register
class TorchScriptRuntime(TorchModuleRuntime):
    name = "torchscript"
    distributions = ("torch",)

    def __init__(self, artifact: Path | None, context: dict[str, Any], threads: int) -> None:
        super().__init__(artifact, context, threads)
        import torch

        torch.set_num_threads(threads)
        self.module = torch.jit.load(str(artifact), map_location="cpu").eval()
