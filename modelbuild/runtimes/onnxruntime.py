"""ONNX Runtime on the CPU execution provider, threads pinned, sequential execution."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from modelbuild.runtimes import RUNTIMES
from modelbuild.runtimes.base import Runtime, missing_module


@RUNTIMES.register
class OnnxRuntime(Runtime):
    name = "onnxruntime"
    distributions = ("onnxruntime",)
    warm_imports = ("onnxruntime",)

    @classmethod
    def unavailable(cls, options: dict[str, Any], purpose: str = "verify") -> str | None:
        return missing_module("onnxruntime", "onnx")

    def __init__(self, artifact: Path | None, context: dict[str, Any], threads: int) -> None:
        super().__init__(artifact, context, threads)
        import onnxruntime as ort

        settings = ort.SessionOptions()
        settings.intra_op_num_threads = threads
        settings.inter_op_num_threads = 1
        # ONNX Runtime's pool keeps spinning after a run by default. The benchmark times each
        # runtime in turns with torch eager in one process, and the spinning pool starved the
        # next torch run of its cores: with 2 threads on 2 cores, eager read 0.368 ms beside ONNX
        # Runtime against 0.027 ms alone, a 13x "speedup" that was not there. Its threads still
        # spin within a run (no spinning at all cost the segmenter its whole second-thread gain),
        # and stop when the run returns, as an app's pool does between infrequent requests.
        settings.add_session_config_entry("session.force_spinning_stop", "1")
        settings.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        settings.log_severity_level = 3
        self.session = ort.InferenceSession(str(artifact), sess_options=settings, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def delegation(self, feeds: list[np.ndarray]) -> Any:
        from modelbuild.delegation.onnxruntime import onnxruntime_delegation

        assert self.artifact is not None
        return onnxruntime_delegation(self.artifact, dict(zip(self.names, feeds)))

    def run(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(None, dict(zip(self.names, feeds))))

    def prepare_call(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> Any:
        bound = dict(zip(self.names, feeds))
        return lambda: self.session.run(None, bound)
