"""PyTorch eager: the wrapped model itself, fp32, eval mode. The baseline every artifact is
compared with and timed against."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from modelbuild.errors import Location
from modelbuild.runtimes import RUNTIMES
from modelbuild.runtimes.base import Runtime


@RUNTIMES.register
class TorchEager(Runtime):
    name = "torch"
    distributions = ("torch",)

    def __init__(self, artifact: Path | None, context: dict[str, Any], threads: int) -> None:
        super().__init__(artifact, context, threads)
        import torch

        from modelbuild.torch_side.eager import build_prepared

        torch.set_num_threads(threads)
        self.module, _model, _notes = build_prepared(context, context["wrapper"], lambda f: Location(context["manifest"], None, f))

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
