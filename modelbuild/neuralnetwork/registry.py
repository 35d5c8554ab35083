"""Which NeuralNetwork layer type each function implements (``NeuralNetworkLayer.layer``)."""

from __future__ import annotations

from modelbuild.registry import FunctionTable

TABLE = FunctionTable("neuralnetwork layer")
LAYERS = TABLE.entries
implements = TABLE.implements


def supported_layers() -> list[str]:
    from modelbuild.neuralnetwork import layers  # noqa: F401 - registers every implementation

    return sorted(LAYERS)
