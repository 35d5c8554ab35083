"""``modelbuild watch``: a change to what the build read starts a round; Ctrl-C ends it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.adversarial.test_user_code import LAYERS, run_artifact, two_folders


def wait_for_text(path: Path, text: str, count: int = 1, seconds: float = 120.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen = path.read_text() if path.exists() else ""
        if seen.count(text) >= count:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"{text!r} x{count} not seen in time:\n{seen}")


def test_watch_rebuilds_after_a_change_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    root = two_folders(tmp_path)
    out = tmp_path / "watch.txt"
    with open(out, "w") as sink:
        watching = subprocess.Popen(
            [sys.executable, "-m", "modelbuild", "watch", "first", "--no-bench", "--interval", "0.1", "--settle", "0.3"],
            cwd=root,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MODELBUILD_WORKERS": "cold"},
        )
        try:
            wait_for_text(out, "round 1: ok; watching")
            assert run_artifact(root, "first") == [3.0] * 4
            # A file the factory imports changes (as a training run rewrites its weights).
            (root / "first" / "models" / "layers.py").write_text(LAYERS.format(factor=7))
            seen = wait_for_text(out, "round 2: ok; watching")
            assert "changed: first/models/layers.py" in seen, seen
            assert run_artifact(root, "first") == [8.0] * 4  # 1 * 7 + 1
            # A manifest that fails: the round says so and watching goes on; the fix is seen.
            manifest = root / "first" / "first.yaml"
            good = manifest.read_text()
            manifest.write_text(good.replace("shape: [1, 4]", "shape: [1, four]"))
            seen = wait_for_text(out, "round 3: exit 2; watching")
            manifest.write_text(good)
            wait_for_text(out, "round 4: ok; watching")
            time.sleep(1.0)  # nothing changes: no round starts by itself
            assert "round 5" not in out.read_text()
            watching.send_signal(signal.SIGINT)
            assert watching.wait(timeout=30) == 0
        finally:
            if watching.poll() is None:
                watching.kill()
    assert out.read_text().rstrip().endswith("stopped watching")


def test_watch_rejects_a_bad_interval(tmp_path: Path) -> None:
    root = two_folders(tmp_path)
    result = subprocess.run([sys.executable, "-m", "modelbuild", "watch", "first", "--interval", "0"], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--interval must be > 0" in result.stderr


def test_a_file_written_during_a_round_starts_the_next_one(tmp_path: Path) -> None:
    """A training job writes while a round builds: the round built what it read, and the
    write is a change still to build. (Taking the signatures after the round as the state to
    wait on would make watch sit on a stale artifact until the next write.)"""
    root = two_folders(tmp_path)
    marker = tmp_path / "write-during-the-round"
    layers = root / "first" / "models" / "layers.py"
    tiny = root / "first" / "models" / "tiny.py"
    # The factory, once, rewrites a module it has already imported: factor 2 built, 5 on disk.
    writes = f"    from pathlib import Path\n    if Path({str(marker)!r}).exists():\n        Path({str(marker)!r}).unlink()\n"
    writes += f"        Path({str(layers)!r}).write_text({LAYERS.format(factor=5)!r})\n"
    tiny.write_text(tiny.read_text().replace("def build():\n", "def build():\n" + writes))
    marker.write_text("")
    out = tmp_path / "watch.txt"
    with open(out, "w") as sink:
        watching = subprocess.Popen(
            # Only the manifest is given: the module is known to watch from the build's record alone.
            [sys.executable, "-m", "modelbuild", "watch", "first/first.yaml", "--no-bench", "--interval", "0.1", "--settle", "0.3", "--rounds", "2"],
            cwd=root,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MODELBUILD_WORKERS": "cold"},
        )
        try:
            assert watching.wait(timeout=300) == 0, out.read_text()
        finally:
            if watching.poll() is None:
                watching.kill()
    seen = out.read_text()
    assert "round 2: ok" in seen and "changed: first/models/layers.py" in seen, seen
    assert run_artifact(root, "first") == [6.0] * 4  # 1 * 5 + 1: the file written during round 1 was built
