"""Load a saved ``neuralnetwork`` package and evaluate its layers in order.

The spec is read with the protobuf classes alone (``coreml.package_io``): no coremltools
import, so verifying a package costs what its layers cost. Image inputs arrive as uint8
NHWC pixels and go through the package's own preprocessing (``channelScale`` and the
per-channel biases), as Core ML applies it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelbuild.neuralnetwork.registry import LAYERS
from modelbuild.neuralnetwork.weights import UnsupportedLayer


class NetworkRunner:
    """Runs a package: inputs by name, outputs by name (the ``ProgramRunner`` interface)."""

    def __init__(self, package: Path) -> None:
        from modelbuild.coreml.package_io import read_spec
        from modelbuild.neuralnetwork import layers  # noqa: F401 - registers the implementations

        self.package = package
        self.spec = read_spec(package)
        kind = self.spec.WhichOneof("Type")
        if kind not in ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor"):
            raise ValueError(f"{package.name} is a {kind} model, not a neural network")
        self.network = getattr(self.spec, kind)
        self.output_names = [o.name for o in self.spec.description.output]
        self.image_inputs = {i.name: i.type.imageType for i in self.spec.description.input if i.type.WhichOneof("Type") == "imageType"}
        self.scalers = {p.featureName: p.scaler for p in self.network.preprocessing if p.WhichOneof("preprocessor") == "scaler"}
        missing = sorted({layer.WhichOneof("layer") for layer in self.network.layers} - set(LAYERS))
        if missing:
            raise UnsupportedLayer(f"{package.name}: neuralnetwork layer type(s) {', '.join(missing)} have no implementation in the Linux executor")

    def run(self, feeds: dict[str, Any], keep: bool = False) -> dict[str, Any]:
        """Outputs by name; with ``keep``, every intermediate blob too (for locating a mismatch)."""
        env: dict[str, torch.Tensor] = {}
        for description in self.spec.description.input:
            env[description.name] = self._input(description.name, feeds[description.name])
        with torch.no_grad():
            for layer in self.network.layers:
                kind = layer.WhichOneof("layer")
                try:
                    result = LAYERS[kind](getattr(layer, kind), [env[name] for name in layer.input])
                except UnsupportedLayer as exc:
                    raise UnsupportedLayer(f"{self.package.name}: layer {layer.name!r} ({kind}): {exc} is not implemented") from None
                results = result if isinstance(result, tuple) else (result,)
                for name, value in zip(layer.output, results):
                    env[name] = value
        if keep:
            return dict(env)
        return {name: env[name] for name in self.output_names if name in env}

    def _input(self, name: str, value: Any) -> torch.Tensor:
        tensor = torch.as_tensor(np.array(value))  # a copy: inputs may be read-only arrays
        if name not in self.image_inputs:
            return tensor.to(torch.float32)
        if tensor.dim() == 4 and tensor.dtype == torch.uint8:
            tensor = tensor.permute(0, 3, 1, 2)  # uint8 NHWC pixels to NCHW
        tensor = tensor.to(torch.float32)
        scaler = self.scalers.get(name)
        if scaler is None:
            return tensor
        scale = scaler.channelScale if scaler.channelScale != 0 else 1.0
        if tensor.shape[1] == 1:
            bias = torch.tensor([scaler.grayBias])
        else:
            rgb = [scaler.redBias, scaler.greenBias, scaler.blueBias]
            colour = self.image_inputs[name].colorSpace
            bias = torch.tensor(rgb[::-1] if colour == 30 else rgb)  # 30: BGR (channels arrive in that order)
        return tensor * scale + bias.reshape(1, -1, 1, 1)

    def class_labels(self) -> list[str]:
        if self.spec.WhichOneof("Type") != "neuralNetworkClassifier":
            return []
        labels = self.network.stringClassLabels.vector or self.network.int64ClassLabels.vector
        return [str(label) for label in labels]
