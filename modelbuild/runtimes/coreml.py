"""Core ML: its own ``predict`` on macOS; on Linux, modelbuild's reference executors
(``modelbuild.mil`` for ML programs, ``modelbuild.neuralnetwork`` for neural networks), which
read the package bytes that ship."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbuild.runtimes import RUNTIMES
from modelbuild.runtimes.base import Runtime

if TYPE_CHECKING:
    import numpy as np

COMPUTE_UNITS = {"all": "ALL", "cpu_only": "CPU_ONLY", "cpu_and_gpu": "CPU_AND_GPU", "cpu_and_ne": "CPU_AND_NE"}


@RUNTIMES.register
class CoreMLRuntime(Runtime):
    name = "coreml"
    distributions = ("coremltools", "modelbuild")  # on Linux our own executor computes the outputs
    warm_imports = ("coremltools",)
    unit_axes_may_differ = True

    runner: Any  # modelbuild's executor (Linux)
    model: Any  # coremltools.models.MLModel (macOS)
    cross_runner: Any = None  # macOS with validate.cross_check: the executor beside predict
    cross_check_max = 0.0
    cross_check_problem = ""

    @classmethod
    def unavailable(cls, options: dict[str, Any], purpose: str = "verify") -> str | None:
        if sys.platform == "darwin":
            return None
        if purpose == "bench":
            return f"Core ML timing needs macOS (this is {sys.platform}); the Linux executor checks outputs, not speed"
        return None  # modelbuild's executors run both formats (ML programs and neural networks)

    @classmethod
    def key_params(cls, options: dict[str, Any]) -> dict[str, Any]:
        # Core ML's predict (macOS) and the reference executor (elsewhere) are different
        # computations, and compute units change both the figures and the timings.
        return {"compute_units": options.get("compute_units", "all"), "platform": "macOS" if sys.platform == "darwin" else "executor"}

    def __init__(self, artifact: Path | None, context: dict[str, Any], threads: int) -> None:
        super().__init__(artifact, context, threads)
        assert artifact is not None  # a Core ML package always ships
        self.classes: list[str] = context.get("classes") or []
        if sys.platform != "darwin":
            import torch

            from modelbuild.coreml.executors import package_runner

            torch.set_num_threads(threads)
            self.runner = package_runner(artifact)
            self.output_names = self.runner.output_names
            return
        import coremltools as ct

        self.cross_runner: Any = None
        if context["targets"]["coreml"].get("validate", {}).get("cross_check"):
            from modelbuild.coreml.executors import package_runner

            self.cross_runner = package_runner(artifact)
        units = COMPUTE_UNITS[context["targets"]["coreml"].get("compute_units", "all")]
        self.model = ct.models.MLModel(str(artifact), compute_units=getattr(ct.ComputeUnit, units))
        self.output_names = [o.name for o in self.model.get_spec().description.output]

    def _feed(self, raw: dict[str, np.ndarray], feeds: list[np.ndarray]) -> dict[str, Any]:
        """Images as Core ML receives them (PIL images of the raw pixels), tensors as they are."""
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

        if sys.platform != "darwin":
            # The executor takes image inputs as uint8 pixels and applies the package's own
            # scale and bias (they are ops of the program).
            named = {i["name"]: (raw[i["name"]] if i["kind"] == "image" else f) for i, f in zip(self.context["inputs"], feeds)}
            predicted = self.runner.run(named)
        else:
            predicted = self.model.predict(self._feed(raw, feeds))
            if self.cross_runner is not None:
                try:
                    self._cross_check(predicted, raw, feeds)
                except Exception as exc:  # noqa: BLE001 - Core ML's own answer stands
                    self.cross_check_problem = f"{type(exc).__name__}: {exc}"
        outputs = []
        for name in self.output_names:
            value = predicted[name]
            if isinstance(value, str):
                continue  # the predicted label: derived from the probabilities
            if isinstance(value, dict):  # a classifier's probabilities: back to label order
                value = np.asarray([[value[c] for c in self.classes]], dtype=np.float32)
            outputs.append(value.float().numpy() if hasattr(value, "float") else np.asarray(value))
        return outputs

    def _cross_check(self, predicted: dict[str, Any], raw: dict[str, np.ndarray], feeds: list[np.ndarray]) -> None:
        """The largest difference between Core ML's predict and the reference executor."""
        import numpy as np

        named = {i["name"]: (raw[i["name"]] if i["kind"] == "image" else f) for i, f in zip(self.context["inputs"], feeds)}
        mine = self.cross_runner.run(named)
        for name, value in predicted.items():
            other = mine.get(name)
            if isinstance(value, (str, dict)) or other is None or isinstance(other, str):
                continue
            delta = np.abs(np.asarray(value, dtype=np.float64).reshape(-1) - other.double().numpy().reshape(-1)).max()
            self.cross_check_max = max(self.cross_check_max, float(delta))

    def explain_mismatch(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> list[str]:
        if sys.platform == "darwin" or self.artifact is None or type(self.runner).__name__ != "ProgramRunner":
            return []
        from modelbuild.mil.explain import locate

        named = {i["name"]: (raw[i["name"]] if i["kind"] == "image" else f) for i, f in zip(self.context["inputs"], feeds)}
        return [f"explain: {line}" for line in locate(self.artifact, named).lines()]

    def verification_notes(self) -> tuple[list[str], dict[str, Any]]:
        if self.cross_runner is None:
            return [], {}
        if self.cross_check_problem:
            return [f"cross-check: the modelbuild executor could not run the package ({self.cross_check_problem})"], {}
        return (
            [f"cross-check: Core ML predict and the modelbuild executor differ by at most {self.cross_check_max:.3g}"],
            {"cross_check_max_abs": self.cross_check_max},
        )

    def prepare_call(self, feeds: list[np.ndarray], raw: dict[str, np.ndarray]) -> Any:
        bound = self._feed(raw, feeds)
        return lambda: self.model.predict(bound)
