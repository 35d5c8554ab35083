"""coreml.convert keeps what coremltools saves to its own scratch folder: nothing in the
machine's temporary folder, where a collected MLModel of another conversion deletes its own
package (a Dask worker once failed with "A valid manifest does not exist at path:
/tmp/tmp....mlpackage/Manifest.json")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

MODEL = """\
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 4), nn.ReLU())
"""

# A plugin runs in the stage's process before the conversion: here it records every folder
# made with tempfile.mkdtemp (coremltools makes its temporary package with it).
RECORDER = """\
import json
import os
import tempfile

_make = tempfile.mkdtemp


def _recorded(*args, **kwargs):
    path = _make(*args, **kwargs)
    with open(os.environ["MB_TEST_MKDTEMP"], "a") as out:
        out.write(json.dumps(path) + "\\n")
    return path


tempfile.mkdtemp = _recorded
"""

MANIFEST = """\
name: tiny
source: {factory: "models.tiny:build"}
plugins: [plugins.recorder]
inputs: [{name: x, shape: [1, 8]}]
targets: {coreml: {format: mlprogram, deployment_target: iOS16}}
validate: {samples: 1}
benchmark: {backends: []}
"""


@pytest.mark.convert
def test_the_converted_package_is_saved_in_the_stage_s_scratch_folder_not_in_tmp(tmp_path: Path) -> None:
    for folder in ("models", "plugins", "manifests"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "models" / "tiny.py").write_text(MODEL)
    (tmp_path / "plugins" / "recorder.py").write_text(RECORDER)
    (tmp_path / "manifests" / "tiny.yaml").write_text(MANIFEST)
    (tmp_path / "modelbuild.toml").write_text('cache_dir = "cache"\nout_dir = "build"\n')
    record = tmp_path / "mkdtemp.jsonl"
    record.touch()
    done = run_cli(tmp_path, "build", "manifests", "--cold", "--no-bench", env={"MB_TEST_MKDTEMP": str(record)})
    assert done.returncode == 0, done.stdout + done.stderr
    made = [Path(json.loads(line)) for line in record.read_text().splitlines()]
    assert made, "the plugin recorded nothing: the test no longer sees the conversion"
    cache = (tmp_path / "cache").resolve()
    assert all(cache in path.resolve().parents for path in made if path.suffix == ".mlpackage" or "coreml-convert-" in path.name), made
    assert any(path.name.startswith("coreml-convert-") for path in made)
    assert not [path for path in made if path.suffix == ".mlpackage"]  # coremltools made no temporary package of its own
    assert (tmp_path / "build" / "tiny" / "tiny.mlpackage" / "Manifest.json").is_file()
    assert not list((tmp_path / "cache" / "tmp").glob("coreml-convert-*"))  # and the scratch folder is gone
