"""TorchScript: ``torch.jit.load`` of the saved ``.pt``, as an app's libtorch would load it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from modelbuild.runtimes import RUNTIMES
from modelbuild.runtimes.base import Runtime


@RUNTIMES.register
class TorchScriptRuntime(Runtime):
    name = "torchscript"
    distributions = ("torch",)

    def __init__(self, artifact: Path | None, context: dict[str, Any], threads: int) -> None:
        super().__init__(artifact, context, threads)
        import torch

        torch.set_num_threads(threads)
        self.module = torch.jit.load(str(artifact), map_location="cpu").eval()

    def run(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> list[np.ndarray]:
        from modelbuild.torch_side.eager import run_numpy

        return run_numpy(self.module, feeds)

    def prepare_call(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> Any:
        import torch

        tensors = [torch.from_numpy(f) for f in feeds]

        def call() -> Any:
            with torch.inference_mode():
                return self.module(*tensors)

        return call
