"""The rebuild matrix, driven by fake stages that count their runs and write fixed bytes.

No converter is involved: these tests pin the executor's decisions (what runs, what is
cached, what early cutoff stops, what a failure blocks).
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from modelbuild.graph.executor import BuildOptions, Executor
from modelbuild.graph.planner import ordered_nodes, plan_graph
from modelbuild.manifest.load import load_models
from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES, Stage, StageJob
from modelbuild.stages.base import PREVIOUS
from modelbuild.store.objects import ObjectStore
from modelbuild.store.state import StateDB

RUNS: list[str] = []


class FakeSource(Stage):
    name = "source"

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        return {"source": model.data["source"]}

    @classmethod
    def files(cls, model: ModelSpec) -> dict[str, str]:
        return {"weights.bin": str(model.folder / "weights.bin")}

    def run(self, job: StageJob) -> None:
        RUNS.append(f"{job.node.model}:source")
        (job.out / "fingerprint").write_bytes(job.files["weights.bin"].read_bytes())  # the snapshot, never the user's path


class FakeCapture(Stage):
    name = "capture"
    deps = ("source",)

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        return {"capture": model.data["capture"]}

    def run(self, job: StageJob) -> None:
        RUNS.append(f"{job.node.model}:capture")
        data = (job.inputs["source"] / "fingerprint").read_bytes()
        if data.startswith(b"fail"):
            raise RuntimeError("capture exploded")
        # Only the first 4 bytes count: a weights change past them is cut off after capture.
        (job.out / "module").write_bytes(data[:4])


class FakeConvert(Stage):
    name = "coreml.convert"
    deps = ("capture",)

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        return {"coreml": {k: v for k, v in model.data["targets"]["coreml"].items() if k not in ("validate", "optimize")}}

    def run(self, job: StageJob) -> None:
        RUNS.append(f"{job.node.model}:coreml.convert")
        (job.out / "raw").write_bytes((job.inputs["capture"] / "module").read_bytes() + b"-converted")


class FakeOptimize(STAGES.get("coreml.optimize")):  # the real key declaration, a fake run
    def run(self, job: StageJob) -> None:
        RUNS.append(f"{job.node.model}:coreml.optimize")
        steps = json.dumps(job.node.params["targets"]["coreml"]["optimize"]).encode()
        (job.out / "raw").write_bytes((job.inputs["coreml.convert"] / "raw").read_bytes() + steps)


class FakePackage(Stage):
    name = "coreml.package"
    deps = ("coreml.optimize",)
    artifacts = ("{model}.mlpackage",)

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        return {"metadata": model.data["metadata"]}

    def run(self, job: StageJob) -> None:
        RUNS.append(f"{job.node.model}:coreml.package")
        package = job.out / f"{job.node.model}.mlpackage"
        package.mkdir()
        (package / "model").write_bytes((job.inputs["coreml.optimize"] / "raw").read_bytes())


class FakeReference(STAGES.get("reference")):  # the real key declaration, a fake run
    def run(self, job: StageJob) -> None:
        RUNS.append(f"{job.node.model}:reference")
        (job.out / "cases").write_bytes((job.inputs["capture"] / "module").read_bytes())


ACTIVE: list[str] = []  # stages running right now (the pool has two threads)
OVERLAPS: list[tuple[str, ...]] = []


def _checked_run(name: str, job: StageJob, seconds: float = 0.02) -> None:
    RUNS.append(f"{job.node.model}:{name}")
    ACTIVE.append(job.node.id)
    if len(ACTIVE) > 1:
        OVERLAPS.append(tuple(ACTIVE))
    time.sleep(seconds)
    ACTIVE.remove(job.node.id)


class FakeVerify(STAGES.get("coreml.verify")):
    @classmethod
    def skip_reason(cls, node: Any) -> str | None:
        return "no Core ML here" if "skipverify" in node.context["source"]["factory"] else None

    def run(self, job: StageJob) -> None:
        _checked_run("coreml.verify", job)
        (job.out / "verify.json").write_text("{}")


class FakeBench(STAGES.get("coreml.bench")):
    @classmethod
    def skip_reason(cls, node: Any) -> str | None:
        return None

    def run(self, job: StageJob) -> None:
        _checked_run("coreml.bench", job)
        (job.out / "bench.json").write_text("[]")


class FakeTorchBench(STAGES.get("torch.bench")):
    def run(self, job: StageJob) -> None:
        _checked_run("torch.bench", job)
        (job.out / "bench.json").write_text("[]")


@contextlib.contextmanager
def fake_stages() -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for stage in (FakeSource, FakeCapture, FakeConvert, FakeOptimize, FakePackage, FakeReference, FakeVerify, FakeBench, FakeTorchBench):
            stack.enter_context(STAGES.override(stage))
        yield


MANIFEST = """\
name: {name}
source: {{factory: "models.fake:build"}}
inputs: [{{name: x, shape: [1, 4]}}]
metadata: {{author: someone}}
"""


class ThreadPool(futures.ThreadPoolExecutor):
    """Two stages at once, in threads: output redirection is per process, so it stays off."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> futures.Future:
        return super().submit(fn, *args, redirect=False, **kwargs)


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "models").mkdir()
        (root / "models" / "fake.py").write_text("def build():\n    pass\n")
        for name in ("alpha", "beta"):
            folder = root / name
            folder.mkdir()
            (folder / "m.yaml").write_text(MANIFEST.format(name=name))
            (folder / "weights.bin").write_bytes(name.encode() + b"-w0")
        self.cache = root / "cache"

    def build(self, listener: Any = None, remote: Any = None, **options: Any) -> dict[str, str]:
        """``remote``: a RemoteConfig; each build opens its own session, as the CLI does."""
        RUNS.clear()
        models = load_models(sorted(self.root.glob("*/m.yaml")), self.root)
        nodes = ordered_nodes(plan_graph(models))
        db = StateDB(self.cache / "state.sqlite")
        try:
            executor = Executor(
                nodes,
                db,
                ObjectStore(self.cache),
                self.root / "build",
                BuildOptions(**options),
                listener,
                pool_factory=lambda n: ThreadPool(max_workers=n),
                remote=_session(remote, self.cache),
            )
            report = executor.run()
        finally:
            db.close()
        self.report = report
        return {f"{r.model}:{r.stage}": r.status for r in report.results}

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.root / name / "m.yaml"
        path.write_text(path.read_text().replace(old, new))


def _session(config: Any, cache: Path) -> Any:
    if config is None:
        return None
    from modelbuild.remote.session import RemoteSession

    return RemoteSession(config, ObjectStore(cache))


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    with fake_stages():
        yield Project(tmp_path)


def statuses(result: dict[str, str], status: str) -> set[str]:
    return {k for k, v in result.items() if v == status}


def test_first_build_runs_everything_second_runs_nothing(project: Project) -> None:
    first = project.build()
    assert set(first.values()) == {"built"}, [(r.stage, r.error) for r in project.report.results if r.error]
    assert len(RUNS) == 18  # source, capture, reference, convert, optimize, package, verify, two benchmarks; two models
    second = project.build()
    assert set(second.values()) == {"cached"}
    assert RUNS == []
    assert (project.root / "build" / "alpha" / "alpha.mlpackage" / "model").read_bytes() == b"alph-converted[]"


def test_touch_without_new_bytes_runs_nothing(project: Project) -> None:
    project.build()
    weights = project.root / "alpha" / "weights.bin"
    os.utime(weights, (time.time() + 100, time.time() + 100))
    assert set(project.build().values()) == {"cached"}


def test_new_weights_rebuild_only_that_model_and_cut_off_early(project: Project) -> None:
    project.build()
    (project.root / "alpha" / "weights.bin").write_bytes(b"alph-other-bytes-after-the-first-four")
    result = project.build()
    # The reference and the eager benchmarks read the model itself (source), so they re-run;
    # the conversion reads only the capture, whose output is unchanged.
    assert RUNS[:3] == ["alpha:source", "alpha:capture", "alpha:reference"]
    assert sorted(RUNS[3:]) == ["alpha:coreml.bench", "alpha:torch.bench"]
    assert result["alpha:coreml.convert"] == "cached"
    assert project.report.results[2].reason == "early cutoff: capture output unchanged"
    assert statuses(result, "built") == {"alpha:source", "alpha:capture", "alpha:reference", "alpha:coreml.bench", "alpha:torch.bench"}
    assert result["alpha:coreml.verify"] == "cached"


def test_an_optimize_step_edit_reruns_only_what_follows_the_conversion(project: Project) -> None:
    project.edit("beta", "metadata:", "targets: {coreml: {optimize: [{palettize: {nbits: 4}}]}}\nmetadata:")
    project.build()
    project.edit("beta", "nbits: 4", "nbits: 6")
    result = project.build()
    assert statuses(result, "built") == {"beta:coreml.optimize", "beta:coreml.package", "beta:coreml.verify", "beta:coreml.bench"}
    optimize = next(r for r in project.report.results if r.model == "beta" and r.stage == "coreml.optimize")
    assert optimize.reason == "targets.coreml.optimize[0].palettize.nbits: 4 → 6"


def test_a_variant_shares_the_conversion_with_its_base(project: Project) -> None:
    project.edit("beta", "metadata:", "variants:\n  small: {targets: {coreml: {optimize: [{prune: {sparsity: 0.5}}]}}}\nmetadata:")
    result = project.build()
    assert set(result.values()) == {"built", "cached"}
    assert [r for r in RUNS if r.endswith(":coreml.convert")].count("beta-small:coreml.convert") + RUNS.count("beta:coreml.convert") == 1
    assert "beta-small:coreml.optimize" in RUNS and "beta-small:coreml.package" in RUNS
    variant = (project.root / "build" / "beta-small" / "beta-small.mlpackage" / "model").read_bytes()
    assert variant.endswith(b'[{"prune": {"sparsity": 0.5}}]')


def test_metadata_edit_reruns_only_package(project: Project) -> None:
    project.build()
    project.edit("beta", "author: someone", "author: someone else")
    result = project.build()
    assert statuses(result, "built") == {"beta:coreml.package"}
    package = next(r for r in project.report.results if r.model == "beta" and r.stage == "coreml.package")
    assert package.reason == "metadata.author: 'someone' → 'someone else'"


def test_coreml_option_rebuilds_only_coreml_branch(project: Project) -> None:
    project.build()
    project.edit("alpha", "metadata:", "targets: {coreml: {precision: float32}}\nmetadata:")
    result = project.build()
    # Same bytes: the package is cut off. The verify tolerance follows the precision (float16
    # programs get a looser default), so verification re-runs.
    assert statuses(result, "built") == {"alpha:coreml.convert", "alpha:coreml.verify"}
    convert = next(r for r in project.report.results if r.model == "alpha" and r.stage == "coreml.convert")
    assert convert.reason == "coreml.precision: 'float16' → 'float32'"


def test_failure_blocks_dependents_and_others_build_with_keep_going(project: Project) -> None:
    (project.root / "alpha" / "weights.bin").write_bytes(b"fail")
    result = project.build(keep_going=True)
    assert result["alpha:capture"] == "failed"
    assert result["alpha:coreml.convert"] == "blocked"
    assert statuses(result, "built") >= {"beta:source", "beta:capture", "beta:coreml.convert", "beta:coreml.package"}
    assert project.report.exit_code == 1
    failed = next(r for r in project.report.results if r.status == "failed")
    assert failed.error == "RuntimeError: capture exploded"


def test_failure_without_keep_going_stops_new_work(project: Project) -> None:
    (project.root / "alpha" / "weights.bin").write_bytes(b"fail")
    result = project.build()
    assert "not run" in result.values()
    assert result["alpha:capture"] == "failed"


def test_failed_stage_leaves_no_cache_entry_and_retries(project: Project) -> None:
    (project.root / "alpha" / "weights.bin").write_bytes(b"fail")
    project.build(keep_going=True)
    result = project.build(keep_going=True)
    assert result["alpha:capture"] == "failed"
    assert "alpha:capture" in RUNS


def test_force_reruns_everything(project: Project) -> None:
    project.build()
    result = project.build(force=True)
    assert set(result.values()) == {"built"}, result


def test_dry_run_runs_nothing_and_explains(project: Project) -> None:
    project.build()
    project.edit("alpha", "author: someone", "author: x")
    result = project.build(dry_run=True)
    assert RUNS == []
    assert result["alpha:coreml.package"] == "would run"
    # Verification and benchmarks read the optimized package, which metadata does not touch.
    assert statuses(project.build(dry_run=True), "would run") == {"alpha:coreml.package"}
    project.edit("alpha", "metadata:", "targets: {coreml: {optimize: [{prune: {sparsity: 0.5}}]}}\nmetadata:")
    assert statuses(project.build(dry_run=True), "would run") >= {"alpha:coreml.optimize", "alpha:coreml.verify", "alpha:coreml.bench"}
    verify = next(r for r in project.report.results if r.model == "alpha" and r.stage == "coreml.verify")
    assert verify.reason == "after coreml.optimize runs"


def test_evicted_cache_entry_is_rebuilt(project: Project) -> None:
    project.build()
    import shutil

    shutil.rmtree(project.cache / "objects")
    result = project.build()
    # Everything is rebuilt; a stage whose output bytes another stage of this build already
    # put back (e.g. two identical bench.json files) finds its entry again.
    assert set(result.values()) <= {"built", "cached"}
    assert {k for k, v in result.items() if v == "built"} >= {"alpha:source", "alpha:coreml.package", "beta:coreml.package"}
    assert project.report.results[0].reason == "cache entry missing"


def test_reverting_weights_hits_the_action_cache(project: Project) -> None:
    project.build()
    weights = project.root / "alpha" / "weights.bin"
    original = weights.read_bytes()
    weights.write_bytes(b"zzzz-new")
    project.build()
    weights.write_bytes(original)
    result = project.build()
    assert "alpha:source" not in RUNS and statuses(result, "built") == set()


def test_tolerance_edit_reruns_verify_and_never_the_benchmarks(project: Project) -> None:
    project.build()
    project.edit("alpha", "metadata:", "validate: {atol: 0.01}\nmetadata:")
    result = project.build()
    assert statuses(result, "built") == {"alpha:coreml.verify"}
    verify = next(r for r in project.report.results if r.model == "alpha" and r.stage == "coreml.verify")
    assert verify.reason == "validate.atol: 0.05 → 0.01"  # the float16 Core ML default, overridden


def test_benchmark_edit_reruns_only_the_benchmarks(project: Project) -> None:
    project.build()
    project.edit("beta", "metadata:", "benchmark: {runs: 7}\nmetadata:")
    result = project.build()
    assert statuses(result, "built") == {"beta:coreml.bench", "beta:torch.bench"}


def test_benchmarks_run_alone(project: Project) -> None:
    OVERLAPS.clear()
    project.build()
    bench = [o for o in OVERLAPS if any(stage.endswith(".bench") for stage in o)]
    assert bench == [], f"a benchmark ran beside {bench}"
    assert RUNS.index("alpha:torch.bench") > RUNS.index("beta:coreml.verify") or RUNS.index("beta:torch.bench") > RUNS.index("alpha:coreml.verify")


def test_a_stage_that_cannot_run_here_is_skipped_with_its_reason_and_never_cached(project: Project) -> None:
    project.edit("alpha", "models.fake:build", "models.fake:skipverify")
    (project.root / "models" / "fake.py").write_text("def build():\n    pass\n\ndef skipverify():\n    pass\n")
    for _ in range(2):
        result = project.build()
        assert result["alpha:coreml.verify"] == "skipped" and "alpha:coreml.verify" not in RUNS
    skipped = next(r for r in project.report.results if r.stage == "coreml.verify" and r.model == "alpha")
    assert skipped.reason == "no Core ML here"
    assert project.report.exit_code == 0


def test_a_stage_is_started_only_when_a_worker_is_free(project: Project) -> None:
    """The live display says "running" for what runs: never more worker stages at once than
    workers (today's bug: every ready stage showed as running while two jobs ran)."""
    import threading

    lock = threading.Lock()
    running: set[str] = set()
    most = [0]

    def listener(event: str, node: Any, result: Any) -> None:
        if not STAGES.get(node.stage).runs_in_worker(node):
            return
        with lock:
            if event == "start":
                running.add(node.id)
                most[0] = max(most[0], len(running))
            else:
                running.discard(node.id)

    result = project.build(listener, jobs=1)
    assert set(result.values()) <= {"built", "skipped"}
    assert most[0] == 1
    most[0] = 0
    project.build(listener, jobs=2, force=True)
    assert most[0] == 2


SEEN_PREVIOUS: list[bytes | None] = []


class PatchingConvert(FakeConvert):
    """A conversion that may build from its own last output (as executorch.export does)."""

    reuses_previous = True

    def run(self, job: StageJob) -> None:
        previous = job.inputs.get(PREVIOUS)
        SEEN_PREVIOUS.append((previous / "raw").read_bytes() if previous is not None else None)
        super().run(job)


def test_a_stage_that_reuses_its_previous_output_gets_it_but_never_under_force(project: Project) -> None:
    SEEN_PREVIOUS.clear()
    with STAGES.override(PatchingConvert):
        project.build()
        assert SEEN_PREVIOUS == [None, None]  # a first build has nothing to reuse
        (project.root / "alpha" / "weights.bin").write_bytes(b"ALFA-w1")
        project.build()
        assert SEEN_PREVIOUS[2:] == [b"alph-converted"]  # its own model's last output, read from the cache
        project.build(force=True)
        assert SEEN_PREVIOUS[3:] == [None, None]
        # An entry the cache no longer holds is not offered.
        last = StateDB(project.cache / "state.sqlite").last_stage("alpha", "coreml.convert")
        assert last is not None
        ObjectStore(project.cache).evict(last[2])
        (project.root / "alpha" / "weights.bin").write_bytes(b"ALFB-w2")
        project.build()
        assert SEEN_PREVIOUS[5:] == [None]


class PlainConvert(FakeConvert):
    def run(self, job: StageJob) -> None:
        SEEN_PREVIOUS.append(b"offered" if PREVIOUS in job.inputs else None)
        super().run(job)


def test_only_stages_that_ask_get_their_previous_output(project: Project) -> None:
    SEEN_PREVIOUS.clear()
    with STAGES.override(PlainConvert):
        project.build()
        (project.root / "alpha" / "weights.bin").write_bytes(b"ALFA-w1")
        project.build()
    assert SEEN_PREVIOUS == [None, None, None]
