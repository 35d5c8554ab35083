"""A build computes from exactly the bytes its keys hashed, and build/ is output, not state.

Driven by the fake stages of the rebuild matrix (tests/graph/test_executor.py): no converter,
so each case pins one decision of the executor.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from modelbuild.errors import IntegrityError, UserError
from modelbuild.graph.executor import BuildOptions, Executor
from modelbuild.graph.planner import ordered_nodes, plan_graph
from modelbuild.manifest.load import load_models
from modelbuild.release.bundle import write_bundle
from modelbuild.release.lockfile import locked_stages, read_lock, write_lock
from modelbuild.report import BuildReport, StageResult, Status
from modelbuild.report.reasons import Reason, Why
from modelbuild.store.objects import ObjectStore
from modelbuild.store.state import StateDB
from tests.graph.test_executor import Project, ThreadPool, fake_stages


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    with fake_stages():
        yield Project(tmp_path)


def build_with(project: Project, listener: Any) -> BuildReport:
    models = load_models(sorted(project.root.glob("*/m.yaml")), project.root)
    db = StateDB(project.cache / "state.sqlite")
    try:
        executor = Executor(
            ordered_nodes(plan_graph(models)),
            db,
            ObjectStore(project.cache),
            project.root / "build",
            BuildOptions(),
            listener,
            pool_factory=lambda n: ThreadPool(max_workers=2),
        )
        return executor.run()
    finally:
        db.close()


def output_of(report: BuildReport, model: str, stage: str) -> str:
    return next(r.output for r in report.results if r.model == model and r.stage == stage)


def test_weights_rewritten_after_hashing_never_reach_the_old_key(project: Project) -> None:
    """A training job writes a new checkpoint between the hash and the load: the stage must
    still compute from the hashed bytes, and the next build must see the new ones."""
    weights = project.root / "alpha" / "weights.bin"
    original = weights.read_bytes()

    def swap(event: str, node: Any, result: Any) -> None:
        if event == "start" and node.id == "alpha:source":
            weights.write_bytes(b"NEWW-a-checkpoint-written-meanwhile")

    report = build_with(project, swap)
    store = ObjectStore(project.cache)
    assert (store.path(output_of(report, "alpha", "source")) / "fingerprint").read_bytes() == original
    second = build_with(project, lambda *a: None)
    source = next(r for r in second.results if r.model == "alpha" and r.stage == "source")
    assert source.status == "built" and "weights.bin changed" in source.reason
    assert (store.path(source.output) / "fingerprint").read_bytes() == b"NEWW-a-checkpoint-written-meanwhile"


def test_a_file_that_never_stops_changing_fails_its_model_with_one_message(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelbuild.store import snapshots

    weights = project.root / "alpha" / "weights.bin"
    real_copy = snapshots._copy

    def copy_while_writing(source: Path, dest: Path) -> None:
        real_copy(source, dest)
        if source == weights:
            weights.write_bytes(weights.read_bytes() + b"+")  # a writer that is always mid-write

    monkeypatch.setattr(snapshots, "_copy", copy_while_writing)
    result = project.build(keep_going=True)
    assert result["alpha:source"] == "failed" and result["beta:coreml.package"] == "built"
    failed = next(r for r in project.report.results if r.status == "failed")
    assert failed.error_kind == "user" and "kept changing while modelbuild read it" in failed.error
    assert project.report.exit_code == 2


def test_an_edited_artifact_in_build_is_put_back(project: Project) -> None:
    project.build()
    artifact = project.root / "build" / "alpha" / "alpha.mlpackage" / "model"
    good = artifact.read_bytes()
    artifact.write_bytes(b"edited by hand")
    result = project.build()
    assert set(result.values()) == {"cached"}
    assert artifact.read_bytes() == good


def test_a_deleted_artifact_in_build_is_put_back(project: Project) -> None:
    project.build()
    package = project.root / "build" / "alpha" / "alpha.mlpackage"
    good = (package / "model").read_bytes()
    shutil.rmtree(package)
    project.build()
    assert (package / "model").read_bytes() == good


def test_an_old_digest_marker_is_not_trusted(project: Project) -> None:
    """Older versions trusted a ``.<name>.digest`` file beside the artifact; a stale marker with
    the right digest and a wrong artifact must not keep the wrong bytes."""
    project.build()
    package = project.root / "build" / "alpha" / "alpha.mlpackage"
    good = (package / "model").read_bytes()
    digest = output_of(project.report, "alpha", "coreml.package")
    (package.parent / f".{package.name}.digest").write_text(digest)
    (package / "model").write_bytes(b"wrong")
    project.build()
    assert (package / "model").read_bytes() == good


def test_tampering_that_keeps_size_mtime_and_inode_is_caught(project: Project) -> None:
    project.build()
    digest = output_of(project.report, "alpha", "coreml.package")
    entry = ObjectStore(project.cache).path(digest) / "alpha.mlpackage" / "model"
    st = entry.stat()
    data = bytearray(entry.read_bytes())
    data[0] ^= 0xFF
    with open(entry, "r+b") as handle:  # in place: same inode
        handle.write(bytes(data))
    os.utime(entry, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the mtime put back
    assert (entry.stat().st_size, entry.stat().st_mtime_ns, entry.stat().st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    result = project.build()
    assert result["alpha:coreml.package"] == "built"
    assert any("corrupt" in w for w in project.report.warnings)
    assert (project.root / "build" / "alpha" / "alpha.mlpackage" / "model").read_bytes()[0] == data[0] ^ 0xFF


def test_release_rehashes_what_it_ships(project: Project, tmp_path: Path) -> None:
    project.build()
    models = {m.name: m for m in load_models(sorted(project.root.glob("*/m.yaml")), project.root)}
    store = ObjectStore(project.cache)
    entry = store.path(output_of(project.report, "alpha", "coreml.package")) / "alpha.mlpackage" / "model"
    entry.write_bytes(b"swapped in the cache after the build")
    with pytest.raises(IntegrityError, match="was altered after it was built"):
        write_bundle(models["alpha"], project.report, store, tmp_path / "dist")
    assert not (tmp_path / "dist" / f"alpha-{models['alpha'].data['version']}").exists()
    assert not store.has(output_of(project.report, "alpha", "coreml.package"))  # evicted: the next build makes it again


def test_a_release_never_replaces_a_folder_it_did_not_write(project: Project, tmp_path: Path) -> None:
    project.build()
    models = {m.name: m for m in load_models(sorted(project.root.glob("*/m.yaml")), project.root)}
    dist = tmp_path / "dist"
    mine = dist / f"beta-{models['beta'].data['version']}"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("the user's own file")
    with pytest.raises(UserError, match="is not a modelbuild release bundle"):
        write_bundle(models["beta"], project.report, ObjectStore(project.cache), dist)
    assert (mine / "notes.txt").read_text() == "the user's own file"


def test_a_version_that_climbs_out_is_refused_by_the_writer(project: Project, tmp_path: Path) -> None:
    """The schema refuses such a version; the writer refuses it again, whatever reaches it."""
    project.build()
    models = {m.name: m for m in load_models(sorted(project.root.glob("*/m.yaml")), project.root)}
    model = models["beta"]
    model.data["version"] = "1/../../escaped"
    with pytest.raises(UserError, match="outside"):
        write_bundle(model, project.report, ObjectStore(project.cache), tmp_path / "dist" / "inner")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "dist" / "escaped").exists()


def test_an_artifact_folder_linked_out_of_build_is_never_written(project: Project, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (project.root / "build").mkdir()
    (project.root / "build" / "alpha").symlink_to(outside)
    with pytest.raises(UserError, match="outside"):
        project.build()
    assert list(outside.iterdir()) == []


def _result(model: str, stage: str, key: str, output: str) -> StageResult:
    return StageResult(model, stage, "built", key=key * 64, output=output * 64)


def test_a_build_of_one_target_keeps_the_other_targets_in_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "modelbuild.lock"
    full = BuildReport([_result("m", "source", "a", "b"), _result("m", "coreml.package", "c", "d"), _result("m", "onnx.export", "e", "f")])
    write_lock(lock, full, {})
    partial = BuildReport([_result("m", "source", "a", "b"), _result("m", "onnx.export", "1", "2")])
    write_lock(lock, partial, read_lock(lock), partial=True)
    assert read_lock(lock)["m"] == {**locked_stages(full)["m"], "onnx.export": {"key": "1" * 64, "output": "2" * 64}}
    write_lock(lock, partial, read_lock(lock))  # a full build of a model replaces its lines
    assert set(read_lock(lock)["m"]) == {"source", "onnx.export"}


@pytest.mark.parametrize(
    "text, message",
    [
        ('[m]\nsource = { key = "abc", output = "def" }\n', 'modelbuild.lock: [m] source: expected { key = "<64 hex digits>"'),
        ("m = 3\n", "modelbuild.lock: [m]: expected a table of stages, got 3"),
        ("[m\n", "modelbuild.lock: not a valid lock file"),
    ],
)
def test_a_malformed_lock_names_the_file_and_the_entry(tmp_path: Path, text: str, message: str) -> None:
    lock = tmp_path / "modelbuild.lock"
    lock.write_text(text)
    with pytest.raises(UserError) as caught:
        read_lock(lock)
    assert message in str(caught.value)


def test_a_tampered_snapshot_is_never_used(project: Project) -> None:
    import time

    from modelbuild.store.hashing import hash_tree

    weights = project.root / "alpha" / "weights.bin"
    os.utime(weights, (time.time() - 100, time.time() - 100))  # settled: its digest is remembered
    project.build()
    db = StateDB(project.cache / "state.sqlite")
    digest = db.recorded_digest(project.root / "alpha" / "weights.bin")
    db.close()
    store = ObjectStore(project.cache)
    store.path(digest).write_bytes(b"TAMPERED in the cache")
    project.edit("alpha", "author: someone", "author: someone new")  # something runs, the weights are unchanged
    project.build()
    assert hash_tree(store.path(digest)) == digest  # evicted and copied again from the user's file


def test_plan_writes_nothing_into_build(project: Project) -> None:
    project.build()
    shutil.rmtree(project.root / "build")
    result = project.build(dry_run=True)
    assert set(result.values()) == {"cached"}
    assert not (project.root / "build").exists()


def test_a_stage_skipped_on_this_machine_keeps_its_lock_entry(tmp_path: Path) -> None:
    lock = tmp_path / "modelbuild.lock"
    on_a_mac = BuildReport(
        [_result("m", "source", "a", "b"), StageResult("m", "coreml.verify", "built", key="c" * 64, output="d" * 64, info={"verdict": "pass"})]
    )
    write_lock(lock, on_a_mac, {})
    here = BuildReport([_result("m", "source", "a", "b"), StageResult("m", "coreml.verify", Status.SKIPPED, reasons=[Reason(Why.SKIPPED, text="macOS only")])])
    write_lock(lock, here, read_lock(lock))
    assert read_lock(lock)["m"]["coreml.verify"]["verdict"] == "pass"


def test_a_lock_with_figures_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    lock = tmp_path / "modelbuild.lock"
    lock.write_text(f'[m]\nreference = {{ key = "{"a" * 64}", output = "{"b" * 64}", check = "tolerance", figures = {{ y = ["x", 1] }} }}\n')
    with pytest.raises(UserError, match=r"modelbuild.lock: \[m\] reference: expected"):
        read_lock(lock)
