"""Faults, races and tampering: kills at seeded random moments, two builds at once, corrupt
cache entries, the lock file, and byte-identical releases."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_examples, run_cli

MANIFEST = """\
name: tiny
version: "2.0.0"
source:
  factory: models.tiny:build
  weights: weights/tiny.safetensors
inputs:
  - name: x
    shape: [{min: 1, max: 8, default: 2}, 4]
outputs:
  - name: y
    select: out
targets: {torchscript: {lite: true}}
metadata: {description: a tiny model}
"""


def tiny_project(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "corpus" / "models" / "tiny.py", root / "models" / "tiny.py")
    (root / "weights").mkdir()
    shutil.copy(REPO / "tests" / "corpus" / "weights" / "tiny.safetensors", root / "weights" / "tiny.safetensors")
    (root / "manifests").mkdir()
    (root / "manifests" / "tiny.yaml").write_text(MANIFEST.replace("weights/", "../weights/"))
    (root / "modelbuild.toml").write_text('cache_dir = "cache"\nout_dir = "build"\njobs = 1\n[defaults]\nbenchmark = { runs = 2, warmup = 0 }\n')
    return root


def artifacts(root: Path) -> dict[str, bytes]:
    folder = root / "build" / "tiny"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in (".pt", ".ptl")}


def build(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli(root, "build", "manifests", "--no-bench", *extra)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    root = tiny_project(tmp_path_factory.mktemp("clean"))
    result = build(root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, artifacts(root)


def test_killed_builds_never_leave_a_trusted_partial_entry(clean: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    """20 kills at seeded random moments (SIGKILL of the whole process group, SIGTERM, SIGINT);
    after each, the next build succeeds and writes the bytes of a clean build."""
    _, expected = clean
    root = tiny_project(tmp_path / "faults")
    rng = random.Random(20261125)
    started = time.perf_counter()
    assert build(root).returncode == 0
    duration = time.perf_counter() - started
    env = {**os.environ}
    for attempt in range(20):
        process = subprocess.Popen(
            [sys.executable, "-m", "modelbuild", "build", "manifests", "--no-bench", "--force"],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.05, duration))
        how = attempt % 3
        try:
            if how == 0:
                os.killpg(process.pid, signal.SIGKILL)  # what a CI runner does to a job
            else:
                process.send_signal(signal.SIGTERM if how == 1 else signal.SIGINT)
        except ProcessLookupError:
            pass  # it had already finished
        process.wait(timeout=120)
        if how != 0:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # orphaned workers, if any
            except ProcessLookupError:
                pass
        after = build(root)
        assert after.returncode == 0, f"attempt {attempt}: {after.stdout}{after.stderr}"
        assert artifacts(root) == expected, f"attempt {attempt}: other bytes than a clean build"
    verify = run_cli(root, "cache", "verify")
    assert verify.returncode == 0 and " 0 corrupt" in verify.stdout, verify.stdout


def test_two_builds_at_once_wait_for_each_other(clean: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    _, expected = clean
    root = tiny_project(tmp_path / "race")
    command = [sys.executable, "-m", "modelbuild", "build", "manifests", "--no-bench"]
    first = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    second = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert any("waiting for another modelbuild build" in err for _, err in outputs)
    assert artifacts(root) == expected
    assert run_cli(root, "cache", "verify").returncode == 0


def test_a_tampered_cache_entry_is_evicted_and_rebuilt(clean: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    _, expected = clean
    root = tiny_project(tmp_path / "tamper")
    assert build(root).returncode == 0
    report = json.loads((root / "build" / "report.json").read_text())
    digest = report["models"]["tiny"]["stages"]["torchscript.export"]["output"]
    entry = root / "cache" / "objects" / digest[:2] / digest / "tiny.pt"
    entry.write_bytes(entry.read_bytes()[:-1] + b"X")  # one byte flipped
    result = build(root)
    assert result.returncode == 0
    assert "warning: tiny: torchscript.export: cache entry was corrupt (its bytes no longer match its digest): evicted, rebuilding" in result.stderr
    assert artifacts(root) == expected
    # cache verify finds and evicts what a build has not touched yet.
    other = json.loads((root / "build" / "report.json").read_text())["models"]["tiny"]["stages"]["capture"]["output"]
    (root / "cache" / "objects" / other[:2] / other / "capture.json").write_text("{}")
    verify = run_cli(root, "cache", "verify")
    assert verify.returncode == 1 and f"corrupt: {other}" in verify.stdout
    assert build(root).returncode == 0 and artifacts(root) == expected


def test_gc_removes_what_no_manifest_reaches(tmp_path: Path) -> None:
    root = tiny_project(tmp_path / "gc")
    assert build(root).returncode == 0
    manifest = root / "manifests" / "tiny.yaml"
    manifest.write_text(manifest.read_text().replace("max: 8, default: 2", "max: 16, default: 2"))
    assert build(root).returncode == 0
    dry = run_cli(root, "cache", "gc", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("would remove ")
    removed = int(dry.stdout.split()[2])
    assert removed > 0
    gc = run_cli(root, "cache", "gc")
    assert gc.stdout.startswith(f"removed {removed} of ")
    again = build(root)
    assert again.returncode == 0 and "built" not in again.stdout.split("\n")[-2]  # everything still cached


def test_locked_builds_name_the_model_stage_and_both_hashes(tmp_path: Path) -> None:
    root = tiny_project(tmp_path / "lock")
    assert build(root).returncode == 0
    lock = root / "modelbuild.lock"
    text = lock.read_text()
    assert '["tiny"]' in text and '"torchscript.export" = { key = "' in text and ".bench" not in text
    assert build(root, "--locked", "--force").returncode == 0  # a forced rebuild gives the same bytes
    report = json.loads((root / "build" / "report.json").read_text())
    real = report["models"]["tiny"]["stages"]["torchscript.export"]["output"]
    lock.write_text(text.replace(real, "0" * 64))
    result = build(root, "--locked")
    assert result.returncode == 1
    assert f"error: --locked: tiny: torchscript.export is not reproducible: this build produced {real}, modelbuild.lock has {'0' * 64}" in result.stderr
    assert lock.read_text() == text.replace(real, "0" * 64)  # --locked never rewrites the lock
    manifest = root / "manifests" / "tiny.yaml"
    manifest.write_text(manifest.read_text().replace("a tiny model", "a small model"))
    lock.write_text(text)
    changed = build(root, "--locked")
    assert changed.returncode == 0  # metadata is not read by any torchscript stage: the lock still holds
    manifest.write_text(manifest.read_text().replace("lite: true", "lite: false"))
    stale = build(root, "--locked")
    assert stale.returncode == 1 and "tiny: torchscript.export: its inputs changed since modelbuild.lock was written" in stale.stderr
    (root / "modelbuild.lock").unlink()
    missing = build(root, "--locked")
    assert missing.returncode == 2 and "--locked: modelbuild.lock not found" in missing.stderr


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_releases_from_empty_caches_are_byte_identical(built_examples: Path, tmp_path: Path) -> None:
    """Every example: artifacts, the .mlpackage.zip, provenance.json and SHA256SUMS."""
    first = run_cli(built_examples, "release", "manifests", "--no-bench", "--out", str(tmp_path / "one"))
    assert first.returncode == 0, first.stdout + first.stderr
    root = copy_examples(tmp_path / "fresh")
    second = run_cli(root, "release", "manifests", "--no-bench", "--out", str(tmp_path / "two"))
    assert second.returncode == 0, second.stdout + second.stderr
    bundles = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert bundles == [
        "classifier-1.0.0",
        "generate-1.0.0",
        "generator-1.0.0",
        "gpt-0.1.0",
        "imageclassifier-1.0.0",
        "lstm-1.0.0",
        "mobilenet-1.0.0",
        "mobilenet-int8-1.0.0",
        "mobilenet-palettized-1.0.0",
        "mobilenet-pruned-1.0.0",
        "onnxsegmenter-1.0.0",
        "rmsnorm-1.0.0",
        "segmenter-1.0.0",
        "smooth-1.0.0",
        "textclassifier-1.0.0",
    ]
    for bundle in bundles:
        one, two = tree(tmp_path / "one" / bundle), tree(tmp_path / "two" / bundle)
        assert one.keys() == two.keys()
        different = [name for name in one if one[name] != two[name]]
        assert different == [], f"{bundle}: {different}"
    lstm = tmp_path / "one" / "lstm-1.0.0"
    assert {"lstm.mlpackage.zip", "lstm.onnx", "lstm.pte", "lstm.pt", "lstm.ptl", "provenance.json", "SHA256SUMS"} <= set(os.listdir(lstm))
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=lstm, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    provenance = json.loads((lstm / "provenance.json").read_text())
    assert provenance["verify"]["onnx"]["verdict"] == "pass" and provenance["stages"]["capture"]["key"]
    assert provenance["tools"]["torch"].startswith("2.13") and provenance["source"]
    import zipfile

    with zipfile.ZipFile(lstm / "lstm.mlpackage.zip") as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
