"""Shared fixtures: a throwaway copy of the example project, and a helper to run the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Builds in tests run cold unless a test asks for warm workers (tests/workers): a warm server
# per throwaway project would outlive its test. Servers a test starts live in a folder of the
# session's own, so they never meet a developer's.
os.environ.setdefault("MODELBUILD_WORKERS", "cold")
os.environ.setdefault("MODELBUILD_WORKERS_DIR", tempfile.mkdtemp(prefix="mb-workers-"))


# Tests check that benchmarks run and report, not how fast: a few runs keep the suite quick.
QUICK_BENCH = "benchmark = { runs = 3, warmup = 1 }\n"


def copy_examples(dest: Path) -> Path:
    shutil.copytree(REPO / "manifests", dest / "manifests", ignore=shutil.ignore_patterns("__pycache__"))
    settings = (REPO / "modelbuild.toml").read_text()
    (dest / "modelbuild.toml").write_text(settings.replace("[defaults]\n", "[defaults]\n" + QUICK_BENCH))
    return dest


def run_cli(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``modelbuild`` as a user would, in a fresh interpreter."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "modelbuild", *args], cwd=cwd, capture_output=True, text=True, env=full_env, timeout=900)


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    return copy_examples(tmp_path)


@pytest.fixture(scope="session")
def built_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project built once for the session (real torch + coremltools conversions)."""
    root = copy_examples(tmp_path_factory.mktemp("examples"))
    result = run_cli(root, "build", "manifests", "-j", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    return root
