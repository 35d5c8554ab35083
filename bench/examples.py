"""What the bench scripts share: the example project, copied to an empty folder, benchmarked."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def bench_report(runs: int, target: str = "manifests") -> dict[str, Any]:
    """``modelbuild bench <target>`` on a copy of the examples from an empty cache; its report.json."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "manifests", root / "manifests", ignore=shutil.ignore_patterns("__pycache__"))
        settings = (REPO / "modelbuild.toml").read_text()
        (root / "modelbuild.toml").write_text(settings.replace("[defaults]\n", f"[defaults]\nbenchmark = {{ runs = {runs} }}\n"))
        result = subprocess.run([sys.executable, "-m", "modelbuild", "bench", target], cwd=root, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"modelbuild bench failed:\n{result.stdout}\n{result.stderr}")
        return json.loads((root / "build" / "report.json").read_text())
