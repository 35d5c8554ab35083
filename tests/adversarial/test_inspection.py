"""The commands that look inside artifacts (``predict``, ``explain``) against damaged or missing
inputs: one line a person can act on, exit 2, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import copy_examples, run_cli


def test_predict_on_a_truncated_or_foreign_model_says_so(tmp_path: Path) -> None:
    package = tmp_path / "broken.mlpackage" / "Data" / "com.apple.CoreML"
    package.mkdir(parents=True)
    (package / "model.mlmodel").write_bytes(b"\x0a\xff\xff\xff\xff garbage")
    (tmp_path / "broken.mlpackage" / "Manifest.json").write_text("{}")
    result = run_cli(tmp_path, "predict", "broken.mlpackage", "--input", "x=x.npy")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "is not a Core ML model (truncated or corrupt); build it again" in result.stderr
    missing = run_cli(tmp_path, "predict", "nowhere.mlpackage", "--input", "x=x.npy")
    assert missing.returncode == 2 and "not an .mlpackage (no Manifest.json) or an .mlmodel file" in missing.stderr


def test_explain_before_a_build_and_after_the_cache_is_gone(tmp_path: Path) -> None:
    root = copy_examples(tmp_path)
    for manifest in (root / "manifests").glob("*.y*ml"):
        if manifest.name != "smooth.yaml":
            manifest.unlink()
    (root / "manifests" / "lstm.toml").unlink()
    unbuilt = run_cli(root, "explain", "smooth")
    assert unbuilt.returncode == 2 and "nothing is built yet; run `modelbuild build --model smooth` first" in unbuilt.stderr, unbuilt.stderr
    unknown = run_cli(root, "explain", "smoth")
    assert unknown.returncode == 2 and "did you mean 'smooth'" in unknown.stderr, unknown.stderr
    assert run_cli(root, "build", "manifests", "--no-bench", "--target", "coreml").returncode == 0
    shutil.rmtree(root / "cache" / "objects")  # the entries the state points at are gone
    gone = run_cli(root, "explain", "smooth")
    assert gone.returncode == 2 and "the cached build of smooth is gone" in gone.stderr and "Traceback" not in gone.stderr, gone.stderr
