"""Builds on a Dask cluster: the address forms, the refusals, and a real LocalCluster of two
worker processes against a moto S3 remote, whose artifacts must be the local build's bytes even
when a worker dies in the middle of a stage."""

from __future__ import annotations

import concurrent.futures as futures
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from modelbuild.cluster.pool import BENCHMARK, ClusterPool, SchedulerSpec, parse_scheduler
from modelbuild.errors import Unavailable, UserError
from modelbuild.remote.config import RemoteConfig
from modelbuild.store.hashing import hash_tree
from modelbuild.store.objects import ObjectStore
from tests.conftest import copy_examples, run_cli
from tests.remote.conftest import free_port


def test_scheduler_addresses() -> None:
    assert parse_scheduler("local:3") == SchedulerSpec(None, 3)
    assert parse_scheduler("tcp://10.0.0.5:8786") == SchedulerSpec("tcp://10.0.0.5:8786")
    for wrong in ("local:0", "local", "http://x:8786", "tcp://", "8786"):
        with pytest.raises(UserError, match="--scheduler: expected"):
            parse_scheduler(wrong)


def test_a_cluster_elsewhere_needs_a_remote(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="workers on other machines cannot read this machine's cache; name a remote cache"):
        ClusterPool(SchedulerSpec("tcp://127.0.0.1:8786"), None, ObjectStore(tmp_path))


def test_a_scheduler_that_is_not_there_is_said_quickly(tmp_path: Path) -> None:
    remote = RemoteConfig((tmp_path / "remote").as_uri())
    started = time.monotonic()
    with pytest.raises(Unavailable, match="cannot reach the Dask scheduler"):
        ClusterPool(SchedulerSpec(f"tcp://127.0.0.1:{free_port()}"), remote, ObjectStore(tmp_path / "cache"), connect_timeout=2)
    assert time.monotonic() - started < 30


class _FakeClient:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def submit(self, fn: Any, *args: Any, **options: Any) -> Any:
        self.calls.append(options)
        done: futures.Future = futures.Future()
        done.set_result(fn(*args))
        return done


def _pool_with(client: _FakeClient, benchmark_workers: bool) -> ClusterPool:
    pool = ClusterPool.__new__(ClusterPool)
    pool.client, pool._cache, pool._benchmark_workers = client, None, benchmark_workers  # type: ignore[assignment]
    pool._after = futures.ThreadPoolExecutor(max_workers=1)
    return pool


def test_benchmarks_ask_for_a_benchmark_worker_and_nothing_is_retried_forever() -> None:
    client = _FakeClient()
    pool = _pool_with(client, benchmark_workers=True)
    job = ({"stage": "coreml.bench"}, {}, {}, "cache", "log")
    assert pool.submit(lambda *a: "ran", *job).result(timeout=5) == "ran"
    pool.submit(lambda *a: "ran", {"stage": "capture"}, {}, {}, "cache", "log").result(timeout=5)
    assert client.calls[0]["resources"] == {BENCHMARK: 1} and "resources" not in client.calls[1]
    assert all(call["pure"] is False and call["retries"] == 1 for call in client.calls)
    without = _FakeClient()
    _pool_with(without, benchmark_workers=False).submit(lambda *a: "ran", *job).result(timeout=5)
    assert "resources" not in without.calls[0]  # no worker offers it: Dask would wait forever


FRAGILE = '''\
"""The rmsnorm example, but the first Dask worker that builds it dies in the middle."""
import os
from pathlib import Path

from models.rmsnorm import build as _build


def build(**kwargs):
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return _build(**kwargs)
    marker = Path(os.environ["FRAGILE_MARKER"])
    if not marker.exists():
        marker.write_text("died once")
        os._exit(1)
    return _build(**kwargs)
'''


def _project(root: Path) -> Path:
    copy_examples(root)
    (root / "manifests" / "models" / "fragile.py").write_text(FRAGILE)
    manifest = (root / "manifests" / "rmsnorm.yaml").read_text()
    (root / "manifests" / "fragile.yaml").write_text(manifest.replace("name: rmsnorm", "name: fragile").replace("models.rmsnorm:build", "models.fragile:build"))
    return root


def _artifacts(root: Path, model: str) -> dict[str, str]:
    folder = root / "build" / model
    return {p.name: hash_tree(p) for p in sorted(folder.iterdir()) if p.name != "logs"}


@pytest.mark.convert
def test_a_local_cluster_against_s3_builds_the_local_bytes_and_survives_a_lost_worker(tmp_path: Path, moto_server: Any, aws_env: dict[str, str]) -> None:
    bucket = f"cluster-{uuid.uuid4().hex[:8]}"
    moto_server.client().create_bucket(Bucket=bucket)
    here = _project(tmp_path / "here")
    marker = tmp_path / "died-once"
    env = {**aws_env, "FRAGILE_MARKER": str(marker)}
    local = run_cli(here, "build", "manifests", "--model", "fragile", "--no-bench", env=env)
    assert local.returncode == 0, local.stdout + local.stderr
    assert not marker.exists()  # no Dask worker: nothing died

    cluster = _project(tmp_path / "cluster")
    built = run_cli(
        cluster,
        "build",
        "manifests",
        "--model",
        "fragile",
        "--no-bench",
        "--scheduler",
        "local:2",
        "--remote",
        f"s3://{bucket}/cache",
        env={**env, "MODELBUILD_REMOTE_PUSH": "true"},
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert marker.read_text() == "died once"  # a worker really died mid-stage, and the stage ran again elsewhere
    assert _artifacts(cluster, "fragile") == _artifacts(here, "fragile")
    assert (cluster / "build" / "fragile" / "logs" / "coreml.convert.log").is_file()  # logs come back from the workers
    shutil.rmtree(cluster / "cache")
    again = run_cli(cluster, "build", "manifests", "--model", "fragile", "--no-bench", "--remote", f"s3://{bucket}/cache", env=env)
    assert again.returncode == 0 and "remote" in again.stdout and " built" not in again.stdout, again.stdout


def test_a_port_that_accepts_and_never_answers_does_not_hang_the_build(tmp_path: Path) -> None:
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    remote = RemoteConfig((tmp_path / "remote").as_uri())
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable, match="cannot reach the Dask scheduler"):
            ClusterPool(SchedulerSpec(f"tcp://127.0.0.1:{listener.getsockname()[1]}"), remote, ObjectStore(tmp_path / "cache"), connect_timeout=1)
        assert time.monotonic() - started < 30
    finally:
        listener.close()
