"""The Linux executor for a Core ML package, whichever its format: ML programs run in
``modelbuild.mil``, neural networks in ``modelbuild.neuralnetwork``. Both take inputs by name
(image inputs as uint8 NHWC pixels, preprocessed by the package itself) and return outputs
by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelbuild.coreml.package_io import read_spec


def package_runner(package: Path) -> Any:
    if read_spec(package).WhichOneof("Type") == "mlProgram":
        from modelbuild.mil.program import ProgramRunner

        return ProgramRunner(package)
    from modelbuild.neuralnetwork.runner import NetworkRunner

    return NetworkRunner(package)


def unsupported_errors() -> tuple[type[Exception], ...]:
    """What the executors raise for an op or layer they do not implement (named, never guessed)."""
    from modelbuild.mil.program import UnsupportedOp
    from modelbuild.neuralnetwork.weights import UnsupportedLayer

    return (UnsupportedOp, UnsupportedLayer)
