"""Broken state is repaired, not fatal: a corrupt state database, a cache that cannot be
written, a disk that fills up mid-build. The object store is the truth; everything else is
rebuilt from it, and the build after the fault gives the bytes of a build from empty."""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path
from typing import Iterator

import pytest

from modelbuild.cli import commands as cli
from modelbuild.store.objects import ObjectStore
from modelbuild.store.state import StateDB
from tests.graph.test_executor import Project, fake_stages
from tests.test_reliability import tiny_project


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    with fake_stages():
        yield Project(tmp_path)


def artifact_bytes(project: Project) -> dict[str, bytes]:
    build = project.root / "build"
    return {p.relative_to(build).as_posix(): p.read_bytes() for p in sorted(build.rglob("*")) if p.is_file() and "logs" not in p.parts}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty pages"])
def test_a_corrupt_state_database_is_set_aside_and_rebuilt(project: Project, damage: str) -> None:
    project.build()
    good = artifact_bytes(project)
    state = project.cache / "state.sqlite"
    db = StateDB(state)
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = state.read_bytes()
    if damage == "garbage":
        state.write_bytes(b"this is not sqlite" * 100)
    elif damage == "truncated":
        state.write_bytes(data[: len(data) // 3])
    else:
        state.write_bytes(data[:100] + b"\0" * (len(data) - 100))
    for suffix in ("-wal", "-shm"):
        Path(str(state) + suffix).unlink(missing_ok=True)
    repaired = StateDB(state)
    assert repaired.repaired and "set aside" in repaired.repaired
    repaired.close()
    assert list(project.cache.glob("state.sqlite.corrupt-*"))
    result = project.build()
    assert set(result.values()) <= {"built", "cached"}, [(r.model, r.stage, r.error) for r in project.report.results if r.error]
    assert artifact_bytes(project) == good


def test_a_full_disk_fails_the_stage_in_one_line_and_the_next_build_gives_the_same_bytes(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    clean = Project(tmp_path_factory.mktemp("clean"))
    clean.build()
    real_put = ObjectStore.put
    calls = {"n": 0}

    def put_until_full(self: ObjectStore, produced: Path) -> str:
        calls["n"] += 1
        if calls["n"] >= 6:
            shutil.rmtree(produced, ignore_errors=True) if produced.is_dir() else produced.unlink(missing_ok=True)
            raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp))
        return real_put(self, produced)

    monkeypatch.setattr(ObjectStore, "put", put_until_full)
    result = project.build(keep_going=True)
    failed = [r for r in project.report.results if r.status == "failed"]
    assert failed and all("No space left on device" in (r.error or "") for r in failed)
    assert "failed" in result.values()
    monkeypatch.setattr(ObjectStore, "put", real_put)
    result = project.build()
    assert set(result.values()) <= {"built", "cached"}
    assert artifact_bytes(project) == artifact_bytes(clean)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_full_disk_at_any_stage_fails_that_stage_and_never_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    """Whichever stage meets the full disk (a light one run in the coordinator included: its
    OSError used to escape the executor and end the build with a traceback), it fails alone,
    and the next build completes."""
    real_put = ObjectStore.put
    for threshold in range(1, 16):
        calls = {"n": 0}

        def put_until_full(self: ObjectStore, produced: Path, threshold: int = threshold, calls: dict = calls) -> str:
            calls["n"] += 1
            if calls["n"] >= threshold:
                shutil.rmtree(produced, ignore_errors=True) if produced.is_dir() else produced.unlink(missing_ok=True)
                raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp))
            return real_put(self, produced)

        with fake_stages():
            (tmp_path / f"full{threshold}").mkdir()
            project = Project(tmp_path / f"full{threshold}")
            monkeypatch.setattr(ObjectStore, "put", put_until_full)
            project.build(keep_going=True, jobs=jobs)
            failed = [r for r in project.report.results if r.status == "failed"]
            assert failed and all("No space left on device" in (r.error or "") for r in failed), threshold
            monkeypatch.setattr(ObjectStore, "put", real_put)
            result = project.build(jobs=jobs)
            assert set(result.values()) <= {"built", "cached", "skipped"}, (threshold, project.report.results)


def test_an_environment_error_is_one_line_without_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    root = tiny_project(tmp_path / "p")
    monkeypatch.chdir(root)

    def full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(StateDB, "_open", full)
    code = cli.main(["build", "manifests", "--no-bench"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == ("error: the state database failed: database or disk is full; if the disk is full, free some space and build again")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(root / "cache" / "state.sqlite"))

    monkeypatch.setattr(StateDB, "_open", denied)
    assert cli.main(["build", "manifests", "--no-bench"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: Permission denied ({root / 'cache' / 'state.sqlite'}); check the folder's permissions"
    assert cli.main(["build", "manifests", "--no-bench", "-v"]) == 1
    assert "Traceback" in capsys.readouterr().err  # -v shows it


def test_plan_works_on_a_cache_it_cannot_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    root = tiny_project(tmp_path / "p")
    monkeypatch.chdir(root)
    (root / "cache").mkdir()
    db = StateDB(root / "cache" / "state.sqlite")
    db.close()
    before = {p.name: p.read_bytes() for p in (root / "cache").iterdir() if p.is_file()}
    monkeypatch.setattr(cli, "_writable", lambda folder: False)
    assert cli.main(["plan", "manifests"]) == 0
    out = capsys.readouterr().out
    assert "would run" in out and "first build" in out
    after = {p.name: p.read_bytes() for p in (root / "cache").iterdir() if p.is_file()}
    assert after == before  # no lock taken, no record written, no snapshot copied
    assert not (root / "cache" / "objects").exists()
    assert cli.main(["check", "manifests"]) == 0


def test_a_malformed_lock_is_named_by_locked_and_rewritten_by_a_plain_build(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    root = tiny_project(tmp_path / "p")
    (root / "modelbuild.lock").write_text('[tiny]\nsource = { key = "short", output = "x" }\n')
    locked = run_cli(root, "build", "manifests", "--no-bench", "--locked")
    assert locked.returncode == 2
    assert 'modelbuild.lock: [tiny] source: expected { key = "<64 hex digits>"' in locked.stderr and "Traceback" not in locked.stderr
    plain = run_cli(root, "build", "manifests", "--no-bench")
    assert plain.returncode == 0, plain.stderr
    assert "written anew from this build" in plain.stderr
    assert run_cli(root, "build", "manifests", "--no-bench", "--locked").returncode == 0
