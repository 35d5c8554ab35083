"""The no-op fast path answers only when nothing it recorded changed: any edit, touch, deleted
artifact, tampered cache entry, new manifest, other request or environment takes the full path
(which then rebuilds what it must), and the fast path imports no graph machinery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytest.importorskip("torch")

FAST = "(no file changed since the last build)"
MODEL = "import torch\n\n\ndef build():\n    torch.manual_seed(0)\n    return torch.nn.Linear(4, 3)\n"
MANIFEST = """\
name: tiny
source: {factory: "models.tiny:build", weights: weights.safetensors, code: [data/]}
inputs:
  - {name: x, shape: [1, 4]}
targets:
  torchscript: {}
benchmark: {backends: []}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("fast")
    (root / "models").mkdir()
    (root / "models" / "tiny.py").write_text(MODEL)
    (root / "manifests").mkdir()
    (root / "manifests" / "tiny.yaml").write_text(MANIFEST)
    (root / "manifests" / "data" / "deep").mkdir(parents=True)
    (root / "manifests" / "data" / "deep" / "table.txt").write_text("1 2 3\n")
    torch.manual_seed(1)
    save_file(torch.nn.Linear(4, 3).state_dict(), str(root / "manifests" / "weights.safetensors"))
    (root / "modelbuild.toml").write_text('cache_dir = "cache"\nout_dir = "build"\n')
    first = run_cli(root, "build", "manifests")
    assert first.returncode == 0, first.stdout + first.stderr
    return root


def build(root: Path, *args: str, env: dict | None = None) -> str:
    result = run_cli(root, "build", "manifests", *args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def settle(root: Path) -> None:
    """A full build after a change records the new state; the next one is the fast path."""
    assert FAST in build(root)


def test_a_second_build_is_the_fast_path_and_imports_no_graph_machinery(project: Path) -> None:
    assert FAST in build(project)
    # report.json says what this run did, as the full path would: every stage up to date.
    stages = json.loads((project / "build" / "report.json").read_text())["models"]["tiny"]["stages"]
    assert {s["status"] for s in stages.values()} == {"cached"} and {s["reason"] for s in stages.values()} == {"up to date"}
    heavy = "('networkx', 'torch', 'rich', 'jsonschema', 'coremltools')"
    code = f"import sys; from modelbuild.cli import main; main(['build', 'manifests']); print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert FAST in out.stdout and out.stdout.strip().endswith("[]"), out.stdout + out.stderr


@pytest.mark.parametrize(
    "change",
    [
        "touch weights",
        "edit weights keeping size and mtime",
        "edit a file deep in a code folder",
        "edit manifest",
        "delete artifact",
        "tamper cache entry",
        "new manifest",
        "corrupt record",
        "modelbuild's own code",
    ],
)
def test_any_change_takes_the_full_path(project: Path, change: str) -> None:
    weights = project / "manifests" / "weights.safetensors"
    artifact = project / "build" / "tiny" / "tiny.pt"
    if change == "touch weights":
        weights.touch()
    elif change == "edit weights keeping size and mtime":
        stat = weights.stat()
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # only ctime tells
    elif change == "edit a file deep in a code folder":
        (project / "manifests" / "data" / "deep" / "table.txt").write_text("1 2 4\n")
    elif change == "edit manifest":
        (project / "manifests" / "tiny.yaml").write_text(MANIFEST + "# a comment\n")
    elif change == "delete artifact":
        artifact.unlink()
    elif change == "tamper cache entry":
        report = json.loads((project / "build" / "report.json").read_text())
        digest = report["models"]["tiny"]["stages"]["torchscript.export"]["output"]
        entry = project / "cache" / "objects" / digest[:2] / digest / "tiny.pt"
        entry.write_bytes(entry.read_bytes() + b"\0")
    elif change == "new manifest":
        (project / "manifests" / "other.yaml").write_text(MANIFEST.replace("name: tiny", "name: other"))
    elif change == "corrupt record":
        (project / "cache" / "noop.json").write_text("{")
    elif change == "modelbuild's own code":
        # An editable checkout's edit under the same version (only the ctime moves here: the
        # bytes and mtime of the repository's file stay as they are).
        import modelbuild.targets.executorch as own

        stat = os.stat(own.__file__)
        os.utime(own.__file__, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    out = build(project)
    assert FAST not in out, change
    assert artifact.is_file()
    if change == "delete artifact":
        assert artifact.read_bytes() == (project / "cache" / "objects").joinpath(*_object(project)).read_bytes()
    if change == "new manifest":
        (project / "manifests" / "other.yaml").unlink()
        build(project)
    settle(project)


def test_another_request_or_environment_takes_the_full_path(project: Path) -> None:
    settle(project)
    assert FAST not in build(project, "--model", "tiny")  # another request
    assert FAST in build(project, "--model", "tiny")
    assert FAST not in build(project, "--model", "tiny", env={"ATEN_CPU_CAPABILITY": "default"})
    assert FAST not in build(project, "-v")  # the full table was asked for
    assert FAST not in build(project, "--force")


def test_a_failed_build_leaves_no_record(project: Path) -> None:
    (project / "models" / "tiny.py").write_text(MODEL.replace("return", "raise RuntimeError('broken')\n    return"))
    failed = run_cli(project, "build", "manifests")
    assert failed.returncode == 2 and not (project / "cache" / "noop.json").exists()
    (project / "models" / "tiny.py").write_text(MODEL)
    assert FAST not in build(project)
    settle(project)


def _object(project: Path) -> tuple[str, ...]:
    report = json.loads((project / "build" / "report.json").read_text())
    digest = report["models"]["tiny"]["stages"]["torchscript.export"]["output"]
    return (digest[:2], digest, "tiny.pt")


CHECKPOINTING = """\
import torch
from pathlib import Path
from safetensors.torch import save_file

MARKER = Path({marker!r})


def build():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    if MARKER.exists():  # a training job that writes its next checkpoint while the build runs
        MARKER.unlink()
        save_file({{"weight": torch.full((3, 4), 7.0), "bias": torch.zeros(3)}}, {weights!r})
    return model
"""


def test_an_input_written_during_the_build_is_not_recorded_as_built(tmp_path: Path) -> None:
    """The record is written when the build ends; a checkpoint the training job wrote after
    the build read the old one must not be recorded as the state it built, or the next build
    would answer "nothing to do" with artifacts of the old weights (the worst bug there is)."""
    import torch
    from safetensors.torch import save_file

    root = tmp_path / "racy"
    (root / "models").mkdir(parents=True)
    (root / "manifests").mkdir()
    weights = root / "manifests" / "weights.safetensors"
    marker = tmp_path / "write-a-checkpoint"
    (root / "models" / "tiny.py").write_text(CHECKPOINTING.format(marker=str(marker), weights=str(weights)))
    (root / "manifests" / "tiny.yaml").write_text(MANIFEST.replace(", code: [data/]", ""))
    torch.manual_seed(1)
    save_file(torch.nn.Linear(4, 3).state_dict(), str(weights))
    (root / "modelbuild.toml").write_text('cache_dir = "cache"\nout_dir = "build"\n')
    marker.write_text("")
    assert build(root, "--cold")  # a stage's factory rewrites the weights after their snapshot
    assert not marker.exists()
    again = build(root, "--cold")
    assert FAST not in again, "the checkpoint written during the last build was taken as built"
    model = torch.jit.load(str(root / "build" / "tiny" / "tiny.pt"))
    assert float(model(torch.ones(1, 4)).sum()) == 3 * 4 * 7.0  # the new checkpoint is what was built
    assert FAST in build(root, "--cold")


def test_a_record_written_after_the_answer_is_dropped_when_another_build_came_first(tmp_path: Path) -> None:
    """A handed-over build writes its no-op record after its client returned. If another build
    ran meanwhile (report.json written anew), the record would pair that build's files with
    this build's report: it is not written."""
    from types import SimpleNamespace

    from modelbuild.cli.fastpath import remember_if_current, signature

    project = SimpleNamespace(out_dir=tmp_path / "build", cache_dir=tmp_path / "cache")
    project.out_dir.mkdir()
    report = project.out_dir / "report.json"
    report.write_text("{}")
    written = signature(report)
    recorded: list[str] = []
    remember_if_current(lambda: recorded.append("first"), project, written)
    report.unlink()
    report.write_text("{}")  # another build's report: same bytes, another file
    remember_if_current(lambda: recorded.append("second"), project, written)
    assert recorded == ["first"]
