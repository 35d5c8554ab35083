"""The plugin example converts only with its plugin; without it the build fails with one
actionable message; the plugin's content is part of the conversion key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import REPO, run_cli


def smooth_project(root: Path, plugin: bool) -> Path:
    shutil.copytree(REPO / "manifests", root / "manifests", ignore=shutil.ignore_patterns("__pycache__", "*.yaml", "*.toml", "weights"))
    text = (REPO / "manifests" / "smooth.yaml").read_text()
    if not plugin:
        text = text.replace("plugins: [plugins.celu]\n", "")
    (root / "manifests" / "smooth.yaml").write_text(text)
    (root / "modelbuild.toml").write_text('cache_dir = "cache"\nout_dir = "build"\n[defaults]\nbenchmark = { backends = [] }\n')
    return root


def test_the_plugin_example_converts_with_its_plugin_and_verifies(tmp_path: Path) -> None:
    root = smooth_project(tmp_path, plugin=True)
    result = run_cli(root, "build", "manifests", "--target", "coreml")
    assert result.returncode == 0, result.stdout + result.stderr
    verify = json.loads((root / "build" / "report.json").read_text())["models"]["smooth"]["stages"]["coreml.verify"]
    assert verify["info"]["verdict"] == "pass" and verify["info"]["outputs"][0]["max_abs"] < 1e-4
    plugin = root / "manifests" / "plugins" / "celu.py"
    plugin.write_text(plugin.read_text() + "\n# an edit\n")
    plan = run_cli(root, "plan", "manifests", "--target", "coreml")
    assert "coreml.convert" in plan.stdout and "manifests/plugins/celu.py changed" in plan.stdout, plan.stdout


def test_without_the_plugin_the_message_names_the_operator_and_the_ways_out(tmp_path: Path) -> None:
    root = smooth_project(tmp_path, plugin=False)
    result = run_cli(root, "build", "manifests", "--target", "coreml")
    assert result.returncode == 1
    assert (
        "smooth: coreml.convert failed: coremltools cannot convert the PyTorch operator 'celu'. Either add a plugin: "
        "a module listed under plugins: that registers a composite op"
    ) in result.stderr
    assert "wrapper.replace" in result.stderr and "Traceback" not in result.stderr
    assert not (root / "build" / "smooth" / "smooth.mlpackage").exists()
