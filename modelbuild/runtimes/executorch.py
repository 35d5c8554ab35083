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

        outputs = self.method.execute(_tensors(feeds))
        return [o.detach().numpy().copy() if hasattr(o, "detach") else np.asarray(o) for o in outputs]

    def prepare_call(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> Any:
        """One call of the program, its outputs left where the program wrote them.

        ExecuTorch's Python binding copies every output into a fresh tensor unless told not to.
        An app never pays that copy (``Module::forward`` hands back tensors in the program's
        planned memory), and eager PyTorch, the benchmark's yardstick, pays none either: timing
        it would charge the program for our binding (measured: 0.085 ms of the segmenter's
        0.81 ms at 256x256, its 1 MB output)."""
        tensors = _tensors(feeds)
        method = getattr(self.method, "_method", None)  # executorch.runtime.Method's binding, which takes clone_outputs
        if method is None:
            return lambda: self.method.execute(tensors)
        return lambda: method(tensors, clone_outputs=False)


def _tensors(feeds: list[np.ndarray]) -> list[Any]:
    """Contiguous copies of the feeds: a program reads unplanned inputs in place, as laid out.
    Each call gets its own tensors, so a program that writes into an input cannot reach the
    caller's arrays (which verification hands to every backend in turn)."""
    import numpy as np
    import torch

    return [torch.from_numpy(np.array(f, order="C", copy=True)) for f in feeds]
