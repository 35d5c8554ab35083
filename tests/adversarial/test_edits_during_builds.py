"""Weights rewritten while a build runs, builds killed at seeded moments in between: no build
ever pairs a key with another model's bytes, and the next build gives the bytes of a build from
empty with the weights as they are then."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelbuild.store.hashing import hash_file
from tests.test_reliability import artifacts, build, tiny_project

VARIANTS = 3


def write_variant(path: Path, index: int) -> None:
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(100 + index)
    save_file({"linear.weight": torch.randn(2, 4, generator=generator), "linear.bias": torch.randn(2, generator=generator)}, str(path))


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """weights digest -> the artifacts of a build from empty with those weights."""
    found = {}
    for index in range(VARIANTS):
        root = tiny_project(tmp_path_factory.mktemp(f"variant{index}"))
        weights = root / "weights" / "tiny.safetensors"
        write_variant(weights, index)
        assert build(root).returncode == 0
        found[hash_file(weights)] = artifacts(root)
    return found


def built_from(root: Path) -> str:
    """The weights digest the last build's source stage snapshotted."""
    report = json.loads((root / "build" / "report.json").read_text())
    source = report["models"]["tiny"]["stages"]["source"]["output"]
    fingerprint = json.loads((root / "cache" / "objects" / source[:2] / source / "fingerprint.json").read_text())
    return fingerprint["files"]["weights/tiny.safetensors"]


@pytest.mark.convert
def test_weights_edited_mid_build_and_kills_never_give_a_wrong_model(expected: dict[str, dict[str, bytes]], tmp_path: Path) -> None:
    root = tiny_project(tmp_path / "edits")
    weights = root / "weights" / "tiny.safetensors"
    write_variant(weights, 0)
    started = time.perf_counter()
    assert build(root).returncode == 0
    duration = time.perf_counter() - started
    rng = random.Random(20261126)
    for attempt in range(8):
        process = subprocess.Popen(
            [sys.executable, "-m", "modelbuild", "build", "manifests", "--no-bench", "--force"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.05, duration))
        write_variant(weights, rng.randrange(VARIANTS))  # a training job writes a checkpoint
        killed = attempt % 2 == 0
        if killed:
            time.sleep(rng.uniform(0.0, duration / 2))
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out, err = process.communicate(timeout=300)
        if not killed:
            assert process.returncode == 0, f"attempt {attempt}: {out}{err}"
            # Whatever moment the checkpoint landed, the build's artifacts are exactly those of
            # the weights its source stage hashed.
            assert artifacts(root) == expected[built_from(root)], f"attempt {attempt}: artifacts of other weights than the key names"
        after = build(root)
        assert after.returncode == 0, f"attempt {attempt}: {after.stdout}{after.stderr}"
        assert built_from(root) == hash_file(weights)
        assert artifacts(root) == expected[hash_file(weights)], f"attempt {attempt}: other bytes than a build from empty"


@pytest.mark.convert
def test_two_builds_and_a_clean_at_once(expected: dict[str, dict[str, bytes]], tmp_path: Path) -> None:
    root = tiny_project(tmp_path / "three")
    weights = root / "weights" / "tiny.safetensors"
    write_variant(weights, 1)
    command = [sys.executable, "-m", "modelbuild"]
    first = subprocess.Popen([*command, "build", "manifests", "--no-bench"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    clean = subprocess.Popen([*command, "clean"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen([*command, "build", "manifests", "--no-bench"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=300) for p in (first, clean, second)]
    assert [p.returncode for p in (first, clean, second)] == [0, 0, 0], outputs
    assert any("waiting for another modelbuild build" in err for _, err in outputs[1:])
    final = build(root)
    assert final.returncode == 0, final.stdout + final.stderr
    assert artifacts(root) == expected[hash_file(weights)]
    verify = subprocess.run([*command, "cache", "verify"], cwd=root, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0 and " 0 corrupt" in verify.stdout
