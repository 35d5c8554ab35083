"""The ExecuTorch runtime (its Python bindings) running a ``.pte`` program."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from modelbuild.runtimes import RUNTIMES
from modelbuild.runtimes.base import Runtime, missing_module


@RUNTIMES.register
class ExecuTorchRuntime(Runtime):
    name = "executorch"
    distributions = ("executorch",)
    warm_imports = ("executorch.runtime", "executorch.extension.pybindings.portable_lib")

    @classmethod
    def unavailable(cls, options: dict[str, Any], purpose: str = "verify") -> str | None:
        if options.get("backend") == "coreml" and sys.platform != "darwin":
            return f"the ExecuTorch Core ML delegate runs on macOS only (this is {sys.platform})"
        return missing_module("executorch", "executorch")

    def __init__(self, artifact: Path | None, context: dict[str, Any], threads: int) -> None:
        super().__init__(artifact, context, threads)
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime as ETRuntime

        # XNNPACK's pool is process-wide; pinning it keeps figures comparable across backends.
        portable_lib._unsafe_reset_threadpool(threads)
        self.method = ETRuntime.get().load_program(str(artifact)).load_method("forward")

    def run(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> list[np.ndarray]:
        import numpy as np
        import torch

        outputs = self.method.execute([torch.from_numpy(f) for f in feeds])
        return [o.detach().numpy().copy() if hasattr(o, "detach") else np.asarray(o) for o in outputs]

    def prepare_call(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> Any:
        import torch

        tensors = [torch.from_numpy(f) for f in feeds]
        return lambda: self.method.execute(tensors)
