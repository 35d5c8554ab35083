"""``modelbuild init``: the starter manifest passes ``check``, a factory's inputs and outputs are
found by calling the model, and every failure is one line with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

import modelbuild
from modelbuild.cli import main
from modelbuild.cli.init import schema_reference

# The checkout the imported modelbuild comes from (a subprocess must import the same one).
CHECKOUT = Path(modelbuild.__file__).resolve().parent.parent


def _write(path: Path, code: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))


def _manifest(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "modelbuild.toml").write_text('cache_dir = "cache"\nout_dir = "build"\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_starter_passes_check_once_its_factory_exists(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    manifest = project / "manifests" / "model.yaml"
    text = manifest.read_text()
    first = text.splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert Path(first.split("=", 1)[1]).is_file()  # outside the checkout: the schema's absolute path
    assert "cannot find module 'models.model'" in text and "cannot find module 'models.model'" in out
    data = _manifest(manifest)
    assert data["source"] == {"factory": "models.model:build", "args": {}}
    assert {"inputs", "outputs", "metadata", "targets", "validate", "benchmark"} <= set(data)
    assert main(["check", "manifests"]) == 2
    assert "source.factory: cannot find module 'models.model'" in capsys.readouterr().err
    _write(project / "models" / "model.py", "def build():\n    import torch\n    return torch.nn.Conv2d(3, 4, 1)\n")
    assert main(["check", "manifests"]) == 0
    assert capsys.readouterr().out.strip().endswith("1 model valid")


def test_conv2d_factory_gives_an_image_input_and_a_verified_output(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(
        project / "models" / "convnet.py",
        """
        import torch

        class Net(torch.nn.Module):
            def __init__(self, classes):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
                self.head = torch.nn.Linear(8, classes)

            def forward(self, photo):
                return self.head(self.conv(photo).mean((2, 3)))

        def build(classes=10):
            return Net(classes)
        """,
    )
    assert main(["init", "models.convnet:build", "--args", '{"classes": 5}', "--name", "convnet"]) == 0
    out = capsys.readouterr().out
    data = _manifest(project / "manifests" / "convnet.yaml")
    assert data["name"] == "convnet"
    assert data["source"] == {"factory": "models.convnet:build", "args": {"classes": 5}}
    (image,) = data["inputs"]
    assert image["name"] == "photo" and image["kind"] == "image" and image["shape"] == [1, 3, 224, 224]
    assert data["outputs"] == [{"name": "output"}]
    assert "returned float32 [1, 5]" in (project / "manifests" / "convnet.yaml").read_text()
    assert "confirmed by calling the model" in out and "modelbuild check manifests/convnet.yaml: ok" in out


def test_text_model_gets_token_ids_and_mask_sharing_one_named_length(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(
        project / "models" / "tokens.py",
        """
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = torch.nn.Embedding(50, 8)
                self.head = torch.nn.Linear(8, 3)

            def forward(self, input_ids, attention_mask=None, labels=None, output_hidden_states=False):
                hidden = self.embed(input_ids)
                if attention_mask is not None:
                    hidden = hidden * attention_mask.unsqueeze(-1)
                return self.head(hidden.mean(1))

        def build():
            return Net()
        """,
    )
    assert main(["init", "models.tokens:build"]) == 0
    capsys.readouterr()
    path = project / "manifests" / "tokens.yaml"
    data = _manifest(path)
    assert set(data["dims"]) == {"seq"}
    ids, mask = data["inputs"]
    assert (ids["name"], ids["dtype"], ids["shape"], ids["range"]) == ("input_ids", "int32", [1, "seq"], [0, 50])
    assert (mask["name"], mask["dtype"], mask["shape"], mask["values"]) == ("attention_mask", "int32", [1, "seq"], "padding_mask")
    assert "left out (optional, with defaults): labels, output_hidden_states" in path.read_text()
    assert main(["check", str(path)]) == 0


def test_dict_outputs_become_select_entries(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(
        project / "manifests" / "heads.py",  # beside the manifest: found there, as a build finds it
        """
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(6, 4)

            def forward(self, features):
                scores = self.fc(features)
                return {"scores": scores, "top": scores.argmax(-1)}

        def build():
            return Net()
        """,
    )
    assert main(["init", "heads:build"]) == 0
    data = _manifest(project / "manifests" / "heads.yaml")
    assert data["inputs"] == [{"name": "features", "kind": "tensor", "shape": [1, 6]}]
    assert data["outputs"] == [{"name": "scores", "select": "scores"}, {"name": "top", "select": "top"}]
    assert "modelbuild check manifests/heads.yaml: ok" in capsys.readouterr().out


def test_an_existing_manifest_is_replaced_only_with_force(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = project / "manifests" / "model.yaml"
    _write(manifest, "name: mine\n")
    assert main(["init"]) == 2
    assert capsys.readouterr().err.strip() == "error: manifests/model.yaml exists; pass --force to replace it"
    assert manifest.read_text() == "name: mine\n"
    assert main(["init", "--force"]) == 0
    assert _manifest(manifest)["name"] == "model"


def test_a_factory_that_raises_is_one_line_and_exit_2(project: Path) -> None:
    _write(project / "models" / "broken.py", "def build():\n    raise ValueError('no checkpoint here\\nsecond line')\n")
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-m", "modelbuild", "init", "models.broken:build"], cwd=project, capture_output=True, text=True, env=env)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: init: factory 'models.broken:build' raised ValueError: no checkpoint here (at broken.py:2)"], result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "manifests").exists()
    missing = subprocess.run([sys.executable, "-m", "modelbuild", "init", "models.absent:build"], cwd=project, capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "error: init: cannot import module 'models.absent' of factory 'models.absent:build': ModuleNotFoundError" in missing.stderr


def test_init_without_a_factory_never_imports_torch(project: Path) -> None:
    code = "import sys; from modelbuild.cli import main; code = main(['init']); print(code, 'torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, env=env)
    assert result.stdout.splitlines()[-1] == "0 False", result.stdout + result.stderr
    assert (project / "manifests" / "model.yaml").is_file()


def test_schema_line_is_relative_inside_the_checkout() -> None:
    assert schema_reference(CHECKOUT / "manifests" / "new.yaml") == "../modelbuild/schema/manifest.schema.json"
    assert schema_reference(CHECKOUT / "a" / "b" / "new.yaml") == "../../modelbuild/schema/manifest.schema.json"
