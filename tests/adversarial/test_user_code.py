"""The user's code is part of what a build reads: per project folder, snapshotted, keyed.

Real torch (small models): two manifest folders that each have their own ``models/tiny.py``
build in one worker process, and each artifact must compute what its own code says.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

MODULE = """\
import torch
from .layers import Scale


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = Scale()

    def forward(self, x):
        return {{"out": self.scale(x) + {offset}}}


def build():
    return Tiny()
"""

LAYERS = """\
import torch


class Scale(torch.nn.Module):
    def forward(self, x):
        return x * {factor}
"""

MANIFEST = """\
name: {name}
source:
  factory: models.tiny:build
inputs:
  - name: x
    shape: [1, 4]
outputs:
  - name: y
    select: out
targets: {{torchscript: {{}}}}
"""


def two_folders(root: Path) -> Path:
    (root / "modelbuild.toml").write_text('cache_dir = "cache"\nout_dir = "build"\njobs = 1\n')
    for name, offset, factor in (("first", 1, 2), ("second", 10, 3)):
        folder = root / name
        (folder / "models").mkdir(parents=True)
        (folder / "models" / "__init__.py").write_text("")
        (folder / "models" / "tiny.py").write_text(MODULE.format(offset=offset))
        (folder / "models" / "layers.py").write_text(LAYERS.format(factor=factor))
        (folder / f"{name}.yaml").write_text(MANIFEST.format(name=name))
    return root


def run_artifact(root: Path, name: str) -> list[float]:
    import torch

    module = torch.jit.load(str(root / "build" / name / f"{name}.pt"))
    out = module(torch.ones(1, 4))
    value = out[0] if isinstance(out, (tuple, list)) else out
    return [round(float(v), 4) for v in value.flatten()]


@pytest.mark.convert
def test_two_folders_with_the_same_module_names_build_their_own_code(tmp_path: Path) -> None:
    root = two_folders(tmp_path)
    # One worker runs both models; bytecode writing on, as on most machines.
    result = run_cli(root, "build", "first", "second", "--no-bench", "-j", "1", env={"PYTHONDONTWRITEBYTECODE": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list((root / "cache" / "objects").rglob("__pycache__"))  # nothing written into a store entry
    assert run_artifact(root, "first") == [3.0] * 4  # 1 * 2 + 1
    assert run_artifact(root, "second") == [13.0] * 4  # 1 * 3 + 10

    # A sibling module the factory imports is part of the key: editing it rebuilds.
    layers = root / "second" / "models" / "layers.py"
    layers.write_text(LAYERS.format(factor=5))
    plan = run_cli(root, "plan", "first", "second")
    assert "second/models/layers.py changed" in plan.stdout, plan.stdout
    result = run_cli(root, "build", "first", "second", "--no-bench", "-j", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert run_artifact(root, "second") == [15.0] * 4
    assert run_artifact(root, "first") == [3.0] * 4


@pytest.mark.convert
def test_a_module_imported_by_a_computed_name_must_be_declared(tmp_path: Path) -> None:
    root = two_folders(tmp_path)
    tiny = root / "first" / "models" / "tiny.py"
    tiny.write_text(tiny.read_text().replace("from .layers import Scale", "import importlib\nScale = importlib.import_module('models.' + 'lay' + 'ers').Scale"))
    result = run_cli(root, "build", "first", "--no-bench")
    assert result.returncode == 2
    assert "must be listed in source.code" in result.stderr or "cannot import module" in result.stderr
    manifest = root / "first" / "first.yaml"
    manifest.write_text(manifest.read_text().replace("  factory: models.tiny:build\n", "  factory: models.tiny:build\n  code: [models/]\n"))
    result = run_cli(root, "build", "first", "--no-bench")
    assert result.returncode == 0, result.stdout + result.stderr
    assert run_artifact(root, "first") == [3.0] * 4


RANDOM_MODULE = """\
import torch


class Random(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)
        self.register_buffer("noise", torch.randn(3), persistent=False)

    def forward(self, x):
        return self.layer(x) + self.noise


def build():
    return Random()
"""


@pytest.mark.convert
def test_a_model_without_weights_is_the_same_model_in_every_stage_and_every_build(tmp_path: Path) -> None:
    """Nothing overwrites its random initialisation, and each stage builds it anew (a cold
    worker, or a warm fork whose generator the warm-up moved on): unseeded, the reference and
    the export drew different weights, so verification failed at random and two builds of the
    same files differed."""
    (tmp_path / "modelbuild.toml").write_text('cache_dir = "cache"\nout_dir = "build"\njobs = 1\n')
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "rnd.py").write_text(RANDOM_MODULE)
    (tmp_path / "rnd.yaml").write_text(MANIFEST.format(name="rnd").replace("models.tiny:build", "models.rnd:build").replace("    select: out\n", ""))
    built = []
    for _ in range(2):
        result = run_cli(tmp_path, "build", "rnd.yaml", "--no-bench", "--force", "--cold")
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads((tmp_path / "build" / "report.json").read_text())
        assert report["models"]["rnd"]["stages"]["torchscript.verify"]["info"]["verdict"] == "pass", result.stdout
        built.append((tmp_path / "build" / "rnd" / "rnd.pt").read_bytes())
    assert built[0] == built[1]
    # And the model's generator use leaves the worker's own alone: torch.rand after a build
    # in this process draws what it would have drawn without it.
    import sys

    import torch

    from modelbuild.torch_side.loading import seeded

    sys.path.insert(0, str(tmp_path))
    try:
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        with seeded():
            from models.rnd import build

            first = build().noise.clone()
        assert torch.equal(torch.rand(3), expected)
        with seeded():
            assert torch.equal(build().noise, first)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("models.rnd", None)
        sys.modules.pop("models", None)
