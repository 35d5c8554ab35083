"""PyTorch eager: the wrapped model itself, fp32, eval mode. The baseline every artifact is
compared with and timed against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelbuild.errors import Location
from modelbuild.runtimes import RUNTIMES
from modelbuild.runtimes.base import TorchModuleRuntime


@RUNTIMES.register
class TorchEager(TorchModuleRuntime):
    name = "torch"
    distributions = ("torch",)

    def __init__(self, artifact: Path | None, context: dict[str, Any], threads: int) -> None:
        super().__init__(artifact, context, threads)
        import torch

        from modelbuild.torch_side.eager import build_prepared

        torch.set_num_threads(threads)
        assert artifact is not None  # the source output: the eager model is built from it
        self.module, _model, _notes = build_prepared(context, artifact, context["wrapper"], lambda f: Location(context["manifest"], None, f))
