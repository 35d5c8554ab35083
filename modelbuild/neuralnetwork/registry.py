"""Which NeuralNetwork layer type each function implements (``NeuralNetworkLayer.layer``)."""

from __future__ import annotations

from typing import Any, Callable

Impl = Callable[..., Any]
LAYERS: dict[str, Impl] = {}


def implements(*names: str) -> Callable[[Impl], Impl]:
    def register(function: Impl) -> Impl:
        for name in names:
            if name in LAYERS:
                raise ValueError(f"neuralnetwork layer {name!r} is implemented twice")
            LAYERS[name] = function
        return function

    return register


def supported_layers() -> list[str]:
    from modelbuild.neuralnetwork import layers  # noqa: F401 - registers every implementation

    return sorted(LAYERS)
