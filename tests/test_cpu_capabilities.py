"""Byte-identity that holds on another machine, not only on this one.

torch picks its float kernels by instruction set; ``ATEN_CPU_CAPABILITY`` reproduces two
machines on one. Artifacts must be the same bytes under both; the reference outputs (PyTorch's
own float results) may differ in the last bits, and ``modelbuild.lock`` checks those by
tolerance, saying so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_examples, run_cli

MODELS = ("gpt", "mobilenet-int8")  # float and int8 (PT2E and ONNX Runtime calibration), three runtimes
SUFFIXES = (".mlpackage", ".onnx", ".pte", ".pt", ".ptl")


def artifacts(root: Path) -> dict[str, bytes]:
    found = {}
    for model in MODELS:
        for path in sorted((root / "build" / model).rglob("*")):
            top = path.relative_to(root / "build" / model).parts[0]
            if path.is_file() and top.endswith(SUFFIXES):
                found[path.relative_to(root / "build").as_posix()] = path.read_bytes()
    return found


@pytest.mark.convert
def test_artifacts_are_the_same_bytes_under_two_cpu_capabilities(tmp_path: Path) -> None:
    roots = {}
    for capability in ("default", "avx2"):
        root = copy_examples(tmp_path / capability)
        args = ["build", "manifests", "--no-bench", *[a for m in MODELS for a in ("--model", m)]]
        result = run_cli(root, *args, env={"ATEN_CPU_CAPABILITY": capability})
        assert result.returncode == 0, result.stdout + result.stderr
        roots[capability] = root
    first, second = artifacts(roots["default"]), artifacts(roots["avx2"])
    assert len(first) >= 6 and first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []

    # The lock written on one "machine" passes --locked on the other; what matched by
    # tolerance rather than bytes is named.
    shutil.copyfile(roots["default"] / "modelbuild.lock", roots["avx2"] / "modelbuild.lock")
    locked = run_cli(roots["avx2"], *args, "--locked", env={"ATEN_CPU_CAPABILITY": "avx2"})
    assert locked.returncode == 0, locked.stdout + locked.stderr
    lock_text = (roots["avx2"] / "modelbuild.lock").read_text()
    assert lock_text == (roots["default"] / "modelbuild.lock").read_text()  # --locked never rewrites it
    if "by tolerance" in locked.stdout:
        assert "reference" in locked.stdout.split("by tolerance", 1)[1]
    # And a plain build on the other machine leaves the committed lock as it was.
    plain = run_cli(roots["avx2"], *args, env={"ATEN_CPU_CAPABILITY": "avx2"})
    assert plain.returncode == 0 and (roots["avx2"] / "modelbuild.lock").read_text() == lock_text


def test_the_lock_says_which_entries_are_checked_by_tolerance() -> None:
    text = (REPO / "modelbuild.lock").read_text()
    references = [line for line in text.splitlines() if line.startswith('"reference"')]
    assert references and all('check = "tolerance"' in line and "figures = {" in line for line in references)
    assert not any(line.startswith('"torch.bench"') or '.bench"' in line.split("=")[0] for line in text.splitlines())
