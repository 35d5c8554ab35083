"""The neuralnetwork executor against PyTorch: small models whose coremltools conversion
(``convert_to="neuralnetwork"``) produces the layers real CNNs, generators, classifier heads
and recurrent models produce, each run from the saved file and compared with the module."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from modelbuild.neuralnetwork.runner import NetworkRunner
from modelbuild.neuralnetwork.weights import UnsupportedLayer

ct = pytest.importorskip("coremltools")


class Spatial(nn.Module):
    """Convolutions (grouped, dilated, strided, transposed), batch and instance norm, reflection
    and replication padding, pooling, nearest and bilinear upsampling, activations, concat."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, groups=2, bias=False, dilation=2, padding=2)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.c3 = nn.Conv2d(8, 8, 3, stride=2)
        self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.c4 = nn.Conv2d(16, 4, 1)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.inorm.weight.uniform_(0.5, 2)
            self.inorm.bias.uniform_(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.c1(x)))
        y = F.leaky_relu(self.inorm(self.c2(F.pad(y, (1, 1, 1, 1), mode="reflect"))), 0.2)[:, :, 1:-1, 1:-1]
        z = self.c3(F.pad(y, (1, 1, 1, 1), mode="replicate"))
        z = torch.sigmoid(self.up(z)) * torch.tanh(y) + F.elu(y) - F.softplus(y)
        a = F.interpolate(F.max_pool2d(z, 2), scale_factor=2, mode="nearest")
        b = F.interpolate(F.avg_pool2d(z, 2), scale_factor=2, mode="bilinear", align_corners=False)
        return self.c4(torch.cat([a, b], dim=1))


class Head(nn.Module):
    """A classifier head: global pooling, permute and reshape, inner product, softmax, a mean."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.fc = nn.Conv2d(3, 6, 3, padding=1), nn.Linear(6 * 4, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = F.adaptive_avg_pool2d(torch.relu(self.c(x)), (2, 2))
        y = y.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return torch.softmax(self.fc(y), dim=-1), y.mean(dim=1, keepdim=True)


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm, self.fc = nn.LSTM(4, 6, batch_first=True), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(x)[0])


def convert(module: nn.Module, shape: tuple[int, ...], folder: Path) -> Path:
    torch.manual_seed(0)
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, torch.randn(*shape))
        converted = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=shape)], convert_to="neuralnetwork")
    path = folder / f"{type(module).__name__}.mlmodel"
    converted.save(str(path))
    return path


@pytest.mark.parametrize(("module", "shape"), [(Spatial, (1, 3, 20, 24)), (Head, (2, 3, 8, 8)), (Recurrent, (1, 5, 4))])
def test_a_converted_network_computes_what_the_module_computes(tmp_path: Path, module: type[nn.Module], shape: tuple[int, ...]) -> None:
    torch.manual_seed(1)
    model = module()
    path = convert(model, shape, tmp_path)
    runner = NetworkRunner(path)
    x = torch.randn(*shape)
    with torch.no_grad():
        want = model(x)
    wanted = [want] if isinstance(want, torch.Tensor) else list(want)
    got = runner.run({"x": x.numpy()})
    assert len(runner.output_names) == len(wanted)
    for name, expected in zip(runner.output_names, wanted):
        np.testing.assert_allclose(got[name].reshape(expected.shape).numpy(), expected.numpy(), atol=1e-5, rtol=1e-5)


def test_a_layer_without_an_implementation_is_named_in_one_message(tmp_path: Path) -> None:
    path = convert(Head(), (2, 3, 8, 8), tmp_path)
    from modelbuild.coreml.package_io import read_spec

    spec = read_spec(path)
    spec.neuralNetwork.layers[-1].argMax.axis = -1  # replaces the layer's kind: one the executor does not implement
    path.write_bytes(spec.SerializeToString())
    with pytest.raises(UnsupportedLayer, match=r"Head.mlmodel: neuralnetwork layer type\(s\) argMax have no implementation"):
        NetworkRunner(path)


def test_every_intermediate_blob_can_be_kept(tmp_path: Path) -> None:
    runner = NetworkRunner(convert(Head(), (2, 3, 8, 8), tmp_path))
    blobs = runner.run({"x": np.zeros((2, 3, 8, 8), np.float32)}, keep=True)
    assert set(runner.output_names) <= set(blobs) and len(blobs) > len(runner.output_names) + 1


def test_the_layer_table_in_docs_is_the_registry() -> None:
    from modelbuild.neuralnetwork.coverage import markdown

    page = Path(__file__).resolve().parents[2] / "docs" / "neuralnetwork-layers.md"
    assert page.read_text(encoding="utf-8") == markdown()
