"""The executor catches real conversion faults in the bytes that ship: a wrong ImageType bias,
altered weights, an op it does not know. Images go in as uint8 pixels, as on a device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modelbuild.checks.cases import generate, pixels_to_tensor
from modelbuild.checks.compare import compare
from modelbuild.mil.program import ProgramRunner, UnsupportedOp, quiet_descriptors

IMAGE = {"name": "image", "kind": "image", "shape": [1, 3, 16, 16], "color_layout": "RGB", "scale": 1 / 127.5, "bias": [-1.0, -1.0, -1.0]}


def _model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()


def _package(tmp_path: Path, bias: float, name: str) -> Path:
    with quiet_descriptors():
        import coremltools as ct

        traced = torch.jit.trace(_model(), torch.zeros(1, 3, 16, 16))
        model = ct.convert(
            traced,
            inputs=[ct.ImageType(name="image", shape=(1, 3, 16, 16), scale=1 / 127.5, bias=[bias] * 3, color_layout=ct.colorlayout.RGB)],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS16,
            compute_precision=ct.precision.FLOAT32,
        )
    path = tmp_path / f"{name}.mlpackage"
    model.save(str(path))
    return path


def _verify(package: Path) -> bool:
    raw = generate([IMAGE], {"image": [1, 3, 16, 16]}, seed=0)
    with torch.no_grad():
        want = _model()(torch.from_numpy(pixels_to_tensor(IMAGE, raw["image"]))).numpy()
    got = next(iter(ProgramRunner(package).run(raw).values())).numpy()
    return compare("out", got, want, atol=1e-4, rtol=1e-4).passed


def test_the_right_package_passes_and_a_wrong_imagetype_bias_fails(tmp_path: Path) -> None:
    assert _verify(_package(tmp_path, -1.0, "right"))
    assert not _verify(_package(tmp_path, 0.0, "wrong_bias"))  # bias 0 where the manifest says -1


def test_altered_weights_fail(tmp_path: Path) -> None:
    package = _package(tmp_path, -1.0, "altered")
    blob = package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    data = bytearray(blob.read_bytes())
    # The last 64 bytes are float32 values of the last weight blob; negate 16 of them.
    tail = np.frombuffer(bytes(data[-64:]), dtype=np.float32) * -1
    data[-64:] = tail.tobytes()
    blob.write_bytes(bytes(data))
    assert not _verify(package)


def test_an_unknown_op_is_named_never_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelbuild.mil.registry import OPS

    package = _package(tmp_path, -1.0, "unknown")
    monkeypatch.delitem(OPS, "conv")
    with pytest.raises(UnsupportedOp, match=r"MIL op 'conv' \(operation '.+', unknown.mlpackage\) has no implementation"):
        ProgramRunner(package).run(generate([IMAGE], {"image": [1, 3, 16, 16]}, seed=0))
