"""The runtime interface: load one artifact, run it on numpy inputs, pin its threads."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np


class Runtime:
    name: ClassVar[str]
    distributions: ClassVar[tuple[str, ...]] = ()  # versions that belong in verify/bench keys
    warm_imports: ClassVar[tuple[str, ...]] = ()  # what a warm worker server imports for this runtime
    # Core ML drops or adds unit axes (a batch of 1) by design; every other runtime must hand
    # back the shape PyTorch does, or an app indexing the output reads it wrong.
    unit_axes_may_differ: ClassVar[bool] = False

    @classmethod
    def unavailable(cls, options: dict[str, Any], purpose: str = "verify") -> str | None:
        """Why this runtime cannot run the artifact on this machine, or None.

        Called while planning, for every build: it must stay cheap (no torch import).
        ``options`` are the target's resolved manifest options; ``purpose`` is "verify" or
        "bench" (a runtime may compute correct outputs here but not representative timings).
        """
        return None

    @classmethod
    def key_params(cls, options: dict[str, Any]) -> dict[str, Any]:
        """What else decides this runtime's results besides the artifact (verify/bench keys)."""
        return {}

    def __init__(self, artifact: Path | None, context: dict[str, Any], threads: int) -> None:
        self.artifact = artifact
        self.context = context
        self.threads = threads

    def run(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs in the manifest's output order.

        ``feeds`` are model tensors in input order (images already scaled and biased);
        ``raw`` are the same samples before preprocessing (images as uint8 NHWC pixels), for
        runtimes that apply the preprocessing themselves, like Core ML.
        """
        raise NotImplementedError

    def verification_notes(self) -> tuple[list[str], dict[str, Any]]:
        """Notes and figures for the verification report beyond the outputs' errors, asked
        after every sample ran (Core ML on macOS: how far its predict is from modelbuild's
        executor)."""
        return [], {}

    def delegation(self, feeds: list[np.ndarray]) -> Any:
        """Where the artifact runs inside this runtime (a ``delegation.report.Delegation``), from
        one profiled run on ``feeds``; None when the runtime cannot say."""
        return None

    def explain_mismatch(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> list[str]:
        """After a failed verification: where inside the artifact the outputs part from the
        reference, for the summary (Core ML: the first float16 op that departs). Empty when
        the runtime cannot look inside its artifact."""
        return []

    def prepare_call(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> Any:
        """A zero-argument callable that runs one inference, with conversions done up front,
        so a benchmark times the runtime and not our numpy plumbing."""
        return lambda: self.run(feeds, raw)


def missing_module(module: str, extra: str) -> str | None:
    """A reason naming the pip extra when ``module`` is not importable."""
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed: pip install 'modelbuild[{extra}]'"
    return None


class TorchModuleRuntime(Runtime):
    """A runtime whose artifact is a callable torch module (eager or TorchScript)."""

    module: Any

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
