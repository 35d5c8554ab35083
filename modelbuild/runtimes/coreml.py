"""Core ML's own ``predict``: needs macOS (coremltools cannot run a model anywhere else)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from modelbuild.runtimes import RUNTIMES
from modelbuild.runtimes.base import Runtime

COMPUTE_UNITS = {"all": "ALL", "cpu_only": "CPU_ONLY", "cpu_and_gpu": "CPU_AND_GPU", "cpu_and_ne": "CPU_AND_NE"}


@RUNTIMES.register
class CoreMLRuntime(Runtime):
    name = "coreml"
    distributions = ("coremltools",)

    @classmethod
    def unavailable(cls, options: dict[str, Any]) -> str | None:
        if sys.platform != "darwin":
            return f"Core ML prediction needs macOS (this is {sys.platform}); no figures were computed"
        return None

    def __init__(self, artifact: Path | None, context: dict[str, Any], threads: int) -> None:
        super().__init__(artifact, context, threads)
        import coremltools as ct

        units = COMPUTE_UNITS[context["targets"]["coreml"].get("compute_units", "all")]
        self.model = ct.models.MLModel(str(artifact), compute_units=getattr(ct.ComputeUnit, units))
        spec = self.model.get_spec()
        self.output_names = [o.name for o in spec.description.output]
        self.classes = context.get("classes")

    def _feed(self, raw: dict[str, np.ndarray], feeds: list[np.ndarray]) -> dict[str, Any]:
        import numpy as np
        from PIL import Image

        result: dict[str, Any] = {}
        for inp, tensor in zip(self.context["inputs"], feeds):
            if inp["kind"] == "image":
                pixels = raw[inp["name"]][0]
                mode = "L" if inp.get("color_layout") == "GRAYSCALE" else "RGB"
                if inp.get("color_layout") == "BGR":
                    pixels = pixels[..., ::-1]  # Core ML reorders RGB images to BGR itself
                result[inp["name"]] = Image.fromarray(np.ascontiguousarray(pixels.squeeze(-1) if mode == "L" else pixels), mode)
            else:
                result[inp["name"]] = tensor
        return result

    def run(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> list[np.ndarray]:
        import numpy as np

        predicted = self.model.predict(self._feed(raw, feeds))
        outputs = []
        for name in self.output_names:
            value = predicted[name]
            if isinstance(value, dict):  # a classifier's probabilities: back to label order
                value = np.asarray([[value[c] for c in self.classes]], dtype=np.float32)
            elif isinstance(value, str):
                continue  # the predicted label: derived from the probabilities
            outputs.append(np.asarray(value))
        return outputs

    def prepare_call(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> Any:
        bound = self._feed(raw, feeds)
        return lambda: self.model.predict(bound)
