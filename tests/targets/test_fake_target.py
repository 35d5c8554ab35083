"""The recipe in docs/design.md, proved: a target is its target class, its export stage and its
runtime, each registered with one line, and nothing else in modelbuild changes for it.

The fake target ships the captured TorchScript under another name and runs it with
``torch.jit.load``. Registered for the length of a test, it gets its manifest table
validated by the generated schema, its defaults and checks applied, a derived ``.verify`` and
``.bench`` stage, and a real build through the executor.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from modelbuild.errors import ManifestError
from modelbuild.graph.executor import BuildOptions, Executor
from modelbuild.graph.planner import ordered_nodes, plan_graph
from modelbuild.manifest.load import load_models
from modelbuild.manifest.schema import schema
from modelbuild.manifest.spec import ModelSpec
from modelbuild.report import Status
from modelbuild.runtimes import RUNTIMES
from modelbuild.runtimes.base import TorchModuleRuntime
from modelbuild.stages import STAGES, Stage, StageJob
from modelbuild.stages.capture import target_options
from modelbuild.store.objects import ObjectStore
from modelbuild.store.state import StateDB
from modelbuild.targets import TARGETS
from modelbuild.targets.base import Fail, Target
from tests.graph.test_executor import ThreadPool  # in-process workers: the fake registrations exist only here


class FakeTarget(Target):
    name = "tsfake"
    stages = ("tsfake.export",)
    runtime = "tsfake"
    options = {"level": {"type": "integer", "minimum": 0, "maximum": 3}}
    defaults = {"level": 1}

    @classmethod
    def check(cls, model: ModelSpec, fail: Fail) -> None:
        if model.data["targets"][cls.name]["level"] == 3 and model.data["capture"]["mode"] != "trace":
            fail("targets.tsfake.level", "expected a level below 3 unless capture.mode is 'trace'")


class FakeExport(Stage):
    name = "tsfake.export"
    deps = ("capture",)
    artifacts = ("{model}.fake.pt",)

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        return target_options(model, "tsfake")

    def run(self, job: StageJob) -> None:
        captured = json.loads((job.inputs["capture"] / "capture.json").read_text())
        shutil.copyfile(job.inputs["capture"] / captured["module"], job.out / f"{job.node.model}.fake.pt")


class FakeRuntime(TorchModuleRuntime):
    name = "tsfake"
    distributions = ("torch",)

    def __init__(self, artifact: Path | None, context: dict[str, Any], threads: int) -> None:
        super().__init__(artifact, context, threads)
        import torch

        self.module = torch.jit.load(str(artifact), map_location="cpu").eval()


@contextlib.contextmanager
def fake_target() -> Iterator[None]:
    with TARGETS.override(FakeTarget), STAGES.override(FakeExport), RUNTIMES.override(FakeRuntime):
        yield


MANIFEST = """\
name: tiny
source: {{factory: "models.tiny:build"}}
inputs: [{{name: x, shape: [1, 4]}}]
targets:
  tsfake: {options}
benchmark: {{runs: 2, warmup: 0}}
"""


def write_project(root: Path, options: str = "{}") -> Path:
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / "tiny.py").write_text("import torch\n\n\ndef build():\n    torch.manual_seed(0)\n    return torch.nn.Linear(4, 2)\n")
    (root / "m.yaml").write_text(MANIFEST.format(options=options))
    return root / "m.yaml"


def test_the_generated_schema_takes_a_registered_target_and_forgets_it_after() -> None:
    with fake_target():
        table = schema()["$defs"]["model"]["properties"]["targets"]["properties"]["tsfake"]
        assert table["properties"]["level"] == {"type": "integer", "minimum": 0, "maximum": 3}
        assert set(table["properties"]["validate"]["properties"]) == {"atol", "rtol", "on_failure"}
        assert "tsfake" in schema()["$defs"]["model"]["properties"]["benchmark"]["properties"]["backends"]["items"]["enum"]
    assert "tsfake" not in schema()["$defs"]["model"]["properties"]["targets"]["properties"]
    assert "tsfake" not in TARGETS and "tsfake.verify" not in STAGES.names()


def test_its_options_are_validated_defaulted_and_checked(tmp_path: Path) -> None:
    with fake_target():
        [model] = load_models([write_project(tmp_path)], tmp_path)
        assert model.data["targets"]["tsfake"] == {"level": 1, "validate": {"atol": 1e-3, "rtol": 1e-3, "on_failure": "error"}}
        with pytest.raises(ManifestError) as bad:
            load_models([write_project(tmp_path, "{level: 7}")], tmp_path)
        assert "m.yaml:5: targets.tsfake.level: expected at most 3, got 7" in str(bad.value)
        with pytest.raises(ManifestError) as typo:
            load_models([write_project(tmp_path, "{levle: 2}")], tmp_path)
        assert "unknown field 'levle' (did you mean 'level'?)" in str(typo.value)
        (tmp_path / "m.yaml").write_text(MANIFEST.format(options="{level: 3}") + "capture: {mode: export}\n")
        with pytest.raises(ManifestError) as checked:
            load_models([tmp_path / "m.yaml"], tmp_path)
        assert "targets.tsfake.level: expected a level below 3 unless capture.mode is 'trace'" in str(checked.value)
    with pytest.raises(ManifestError) as gone:
        load_models([write_project(tmp_path)], tmp_path)
    assert "unknown field 'tsfake'" in str(gone.value)


def test_it_builds_verifies_and_benchmarks_with_no_other_change(tmp_path: Path) -> None:
    with fake_target():
        models = load_models([write_project(tmp_path)], tmp_path)
        nodes = ordered_nodes(plan_graph(models))
        assert sorted(n.stage for n in nodes if n.stage.startswith("tsfake")) == ["tsfake.bench", "tsfake.export", "tsfake.verify"]
        db = StateDB(tmp_path / "cache" / "state.sqlite")
        try:
            executor = Executor(
                nodes, db, ObjectStore(tmp_path / "cache"), tmp_path / "build", BuildOptions(jobs=1), pool_factory=lambda n: ThreadPool(max_workers=1)
            )
            report = executor.run()
        finally:
            db.close()
    statuses = {r.stage: r.status for r in report.results}
    assert statuses["tsfake.export"] == statuses["tsfake.verify"] == statuses["tsfake.bench"] == Status.BUILT, statuses
    assert (tmp_path / "build" / "tiny" / "tiny.fake.pt").stat().st_size > 0
    verify = next(r for r in report.results if r.stage == "tsfake.verify")
    assert verify.info["verdict"] == "pass" and verify.info["samples"] >= 1, verify.info
