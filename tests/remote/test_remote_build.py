"""A build with a remote cache, driven by the executor tests' fake stages (no converter): one
machine pushes, another fetches, and no fault of the remote can make a build wrong or fail."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Iterator

import pytest

from modelbuild.remote.archive import pack
from modelbuild.remote.cache import RemoteCache, RemoteTrouble
from modelbuild.remote.config import RemoteConfig
from modelbuild.store.hashing import hash_tree
from modelbuild.store.objects import ObjectStore

# Imported once, at the top: the class patched below must be the one fake_stages registers
# (a build run in-process forgets modules loaded from the project's folders, so an import
# inside the test could load a second copy of this module).
from tests.graph.test_executor import RUNS, FakeVerify, Project, fake_stages


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[tuple[Project, Project]]:
    """Two checkouts of one project at different paths, each with its own empty cache."""
    with fake_stages():
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        yield Project(tmp_path / "a"), Project(tmp_path / "b")


def artifacts(project: Project) -> dict[str, str]:
    build = project.root / "build"
    return {str(p.relative_to(build)): hash_tree(p) for p in sorted(build.glob("*/*.mlpackage"))}


def shared(result: dict[str, str]) -> dict[str, str]:
    """The stages that go through the remote: all but the benchmarks (they measure a machine)."""
    return {k: v for k, v in result.items() if not k.endswith("bench")}


def benches(result: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in result.items() if k.endswith("bench")}


def reader(config: RemoteConfig) -> RemoteConfig:
    return dataclasses.replace(config, push=False)


def remote_records(config: RemoteConfig) -> list[dict]:
    cache = RemoteCache(config)
    return [json.loads(cache.fs.cat_file(path)) for path in cache.fs.find(f"{cache.root}/actions")]


def assert_no_dangling_record(config: RemoteConfig) -> None:
    """The push order's promise: every record on the remote names an object that is there."""
    cache = RemoteCache(config)
    for record in remote_records(config):
        assert cache.has_object(record["output"], record["kind"]), record


def test_second_machine_fetches_everything_and_builds_nothing(machines: tuple[Project, Project], remote: RemoteConfig) -> None:
    first, second = machines
    built = first.build(remote=remote)
    assert set(built.values()) == {"built"}
    assert first.report.remote is not None and first.report.remote["pushed"] == len(shared(built))
    assert_no_dangling_record(remote)

    fetched = second.build(remote=reader(remote))
    assert set(shared(fetched).values()) == {"remote"}, fetched
    assert set(benches(fetched).values()) == {"built"}  # a laptop never shows CI's timings
    assert all(run.endswith("bench") for run in RUNS)
    assert artifacts(second) == artifacts(first) and artifacts(first)
    assert all("from the remote cache" in r.reason for r in second.report.results if not r.stage.endswith("bench"))
    assert second.report.remote["fetched_bytes"] > 0 and second.report.remote["pushed"] == 0

    again = second.build(remote=reader(remote))  # now local: nothing is fetched twice
    assert set(again.values()) == {"cached"}
    assert second.report.remote["fetched"] == 0


def test_a_reader_never_pushes(machines: tuple[Project, Project], remote: RemoteConfig) -> None:
    first, _ = machines
    first.build(remote=reader(remote))
    assert first.report.remote["pushed"] == 0
    assert remote_records(remote) == []


def test_a_corrupt_remote_object_is_ignored_and_rebuilt(machines: tuple[Project, Project], remote: RemoteConfig, tmp_path: Path) -> None:
    first, second = machines
    first.build(remote=remote)
    capture = next(r for r in first.report.results if r.model == "alpha" and r.stage == "capture")
    cache = RemoteCache(remote)
    evil = tmp_path / "evil"
    (evil / "tree").mkdir(parents=True)
    (evil / "tree" / "module").write_bytes(b"evil")
    pack(evil / "tree", evil / "object.tar")  # a well-formed archive of other bytes
    cache.fs.put_file(str(evil / "object.tar"), cache.object_path(capture.output, "dir"))

    result = second.build(remote=remote)  # a pushing reader: it also repairs the remote
    assert result["alpha:capture"] == "built"
    assert result["beta:capture"] == "remote"
    assert any("alpha: capture: the remote entry was ignored" in w and "holds other bytes" in w for w in second.report.warnings)
    assert artifacts(second) == artifacts(first)
    assert cache.check(capture.output, "dir", tmp_path / "probe")  # written over with the right bytes


def test_a_corrupt_remote_folder_and_record(machines: tuple[Project, Project], remote: RemoteConfig) -> None:
    first, second = machines
    built = first.build(remote=remote)
    # Once in a full CI run, alpha's coreml.verify had no key here (not built); say what it was.
    assert set(shared(built).values()) == {"built"}, (built, first.report.warnings)
    package = next(r for r in first.report.results if r.model == "beta" and r.stage == "coreml.package")
    verify = next(r for r in first.report.results if r.model == "alpha" and r.stage == "coreml.verify")
    cache = RemoteCache(remote)
    cache.fs.pipe_file(cache.object_path(package.output, "dir"), b"not a tar")  # type: ignore[arg-type]
    cache.fs.pipe_file(cache.action_path(verify.key), b"{garbage")  # type: ignore[arg-type]

    result = second.build(remote=reader(remote))
    assert result["beta:coreml.package"] == "built" and result["alpha:coreml.verify"] == "built"
    assert len([w for w in second.report.warnings if "ignored" in w]) == 2
    assert artifacts(second) == artifacts(first)


def test_an_unreachable_remote_builds_locally_with_one_warning(machines: tuple[Project, Project], tmp_path: Path) -> None:
    first, _ = machines
    nowhere = RemoteConfig(url="s3://bucket/prefix", push=True, options={"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}})
    result = first.build(remote=nowhere)
    assert set(result.values()) == {"built"}
    assert len(first.report.warnings) == 2, first.report.warnings  # one for reading, one for pushing: each said once
    assert "could not be reached" in first.report.warnings[0] and "building locally" in first.report.warnings[0]
    assert "nothing more is pushed" in first.report.warnings[1]


def test_two_machines_pushing_at_once(tmp_path: Path, remote: RemoteConfig) -> None:
    with fake_stages():
        projects = []
        for name in ("a", "b", "c"):
            (tmp_path / name).mkdir()
            projects.append(Project(tmp_path / name))
        errors: list[BaseException] = []

        def build(project: Project) -> None:
            try:
                project.build(remote=remote)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=build, args=(p,)) for p in projects[:2]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert all(set(r.status for r in p.report.results) <= {"built", "remote"} for p in projects[:2])
        assert_no_dangling_record(remote)
        third = projects[2].build(remote=reader(remote))
        assert set(shared(third).values()) == {"remote"}
        assert artifacts(projects[2]) == artifacts(projects[0])


def test_the_server_stopped_mid_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto in this process keeps its buckets across a stop, so the test can look at what the
    remote holds after the server vanished in the middle of a pushing build."""
    from moto.server import ThreadedMotoServer

    from tests.remote.conftest import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    import boto3

    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="midway")
    config = RemoteConfig(url="s3://midway/cache", push=True)
    done: list[str] = []

    def stop_after_a_few(event: str, node: object, result: object) -> None:
        if event == "done":
            done.append(event)
            if len(done) == 5:
                server.stop()

    try:
        with fake_stages():
            (tmp_path / "a").mkdir()
            (tmp_path / "b").mkdir()
            first, second = Project(tmp_path / "a"), Project(tmp_path / "b")
            result = first.build(listener=stop_after_a_few, remote=config)
            assert set(result.values()) == {"built"}  # the build never fails for the remote
            assert len([w for w in first.report.warnings if "nothing more is pushed" in w]) == 1
            assert len([w for w in first.report.warnings if "not read again" in w]) <= 1

            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            assert_no_dangling_record(config)  # what got there is whole: no record before its object
            pushed = len(remote_records(config))
            assert 0 < pushed < len(result)
            fetched = second.build(remote=reader(config))
            assert sum(1 for status in fetched.values() if status == "remote") >= 1
            assert artifacts(second) == artifacts(first)
    finally:
        server.stop()


def test_read_only_credentials_fetch_but_never_push(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IAM policies enforced by moto: the reader's pushes are refused (one warning, the build
    goes on), its fetches work; the writer's pushes land."""
    from tests.remote.conftest import MotoServer

    server = MotoServer()
    server.start()
    try:
        server.client().create_bucket(Bucket="guarded")  # type: ignore[attr-defined]
        keys = server.enforce_policies("guarded")
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        config = RemoteConfig(url="s3://guarded/cache", push=True)

        def as_user(user: str) -> None:
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys[user][0])
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys[user][1])

        with fake_stages():
            (tmp_path / "a").mkdir()
            (tmp_path / "b").mkdir()
            laptop, ci = Project(tmp_path / "a"), Project(tmp_path / "b")
            as_user("reader")
            result = laptop.build(remote=config)  # push = true, but these credentials only read
            assert set(result.values()) == {"built"}
            refused = [w for w in laptop.report.warnings if "refused the upload (read-only credentials?)" in w]
            assert len(refused) == 1 and len(laptop.report.warnings) == 1, laptop.report.warnings
            assert keys["reader"][1] not in refused[0]  # a secret never reaches a message

            as_user("writer")
            ci.build(remote=config)
            assert ci.report.remote["pushed"] == len(shared(result)) and not ci.report.warnings
            as_user("reader")
            (laptop.root / "build").rename(laptop.root / "old-build")
            laptop.cache.rename(laptop.root / "old-cache")
            fetched = laptop.build(remote=reader(config))
            assert set(shared(fetched).values()) == {"remote"}
            assert artifacts(laptop) == artifacts(ci)
    finally:
        server.stop()


def test_a_stage_skipped_on_one_platform_never_blocks_sharing_the_rest(
    machines: tuple[Project, Project], remote: RemoteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux CI skips Core ML verification (it needs macOS) and shares everything else; the
    Mac fetches all of that and runs only its verification."""
    linux, mac = machines
    monkeypatch.setattr(FakeVerify, "skip_reason", classmethod(lambda cls, node: "Core ML prediction needs macOS"))
    on_linux = linux.build(remote=remote)
    assert statuses_of(on_linux, "skipped") == {"alpha:coreml.verify", "beta:coreml.verify"}
    monkeypatch.setattr(FakeVerify, "skip_reason", classmethod(lambda cls, node: None))
    on_mac = mac.build(remote=remote)
    assert statuses_of(shared(on_mac), "built") == {"alpha:coreml.verify", "beta:coreml.verify"}
    assert statuses_of(on_mac, "remote") == {k for k, v in shared(on_linux).items() if v == "built"}
    assert sorted(r for r in RUNS if not r.endswith("bench")) == ["alpha:coreml.verify", "beta:coreml.verify"]


def statuses_of(result: dict[str, str], status: str) -> set[str]:
    return {k for k, v in result.items() if v == status}


def test_a_server_that_accepts_and_never_answers_costs_seconds_not_the_build(machines: tuple[Project, Project]) -> None:
    """Reads and uploads time out (uploads send no ``Expect: 100-continue``, which aiohttp
    would wait on forever); the build finishes locally with one warning per direction."""
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def hold() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=hold, daemon=True).start()
    first, _ = machines
    silent = RemoteConfig(
        url="s3://bucket/prefix",
        push=True,
        options={"client_kwargs": {"endpoint_url": f"http://127.0.0.1:{listener.getsockname()[1]}"}, "config_kwargs": {"read_timeout": 1}},
    )
    started = time.monotonic()
    try:
        result = first.build(remote=silent)
        assert set(result.values()) == {"built"}
        assert len(first.report.warnings) == 2, first.report.warnings
        # An upload on its own (the build's pushes stop at the first failure, whichever it was):
        # without the session fix this waited forever.
        package = next(r.output for r in first.report.results if r.stage == "coreml.package")
        with pytest.raises(RemoteTrouble, match="could not be reached"):
            RemoteCache(silent).push_object(package, ObjectStore(first.cache), overwrite=True)
    finally:
        listener.close()
    assert time.monotonic() - started < 60


def test_a_record_whose_object_is_gone_costs_that_entry_only(machines: tuple[Project, Project], remote: RemoteConfig) -> None:
    first, second = machines
    first.build(remote=remote)
    capture = next(r for r in first.report.results if r.model == "alpha" and r.stage == "capture")
    cache = RemoteCache(remote)
    cache.fs.rm_file(cache.object_path(capture.output, "dir"))
    result = second.build(remote=reader(remote))
    assert result["alpha:capture"] == "built" and result["beta:capture"] == "remote"
    assert result["alpha:coreml.package"] == "remote"  # the remote was still read after the gap
    assert any("is not on the remote" in w for w in second.report.warnings)


def test_a_full_local_disk_while_fetching_builds_locally(machines: tuple[Project, Project], remote: RemoteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    first, second = machines
    first.build(remote=remote)

    def full(archive: Path, folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "half").write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")

    import modelbuild.remote.cache as remote_cache

    monkeypatch.setattr(remote_cache, "unpack", full)  # the disk fills while an archive is unpacked
    result = second.build(remote=reader(remote))
    monkeypatch.undo()
    assert "remote" not in result.values()
    assert any("cannot store what the remote sent" in w and "No space left" in w for w in second.report.warnings), second.report.warnings
    assert not list((second.cache / "tmp").glob("fetch-*"))  # nothing half-fetched left behind


def test_an_upload_killed_midway_leaves_nothing_a_reader_takes(machines: tuple[Project, Project], file_remote: RemoteConfig) -> None:
    """A pusher killed mid-upload on a shared disk leaves a ``.partial-*`` file: never an object
    name, never listed by ``cache verify --remote``, and the reader builds that entry itself."""
    first, second = machines
    first.build(remote=file_remote)
    capture = next(r for r in first.report.results if r.model == "alpha" and r.stage == "capture")
    cache = RemoteCache(file_remote)
    target = cache.object_path(capture.output, "dir")
    cache.fs.mv(target, f"{target}.partial-0123")  # the rename that never happened
    cache.fs.pipe_file(f"{target}.partial-0123", b"half an archive")
    assert (capture.output, "dir") not in cache.object_digests()
    result = second.build(remote=reader(file_remote))
    assert result["alpha:capture"] == "built" and result["beta:capture"] == "remote"
    assert artifacts(second) == artifacts(first)


def test_control_characters_in_a_records_notes_never_reach_the_terminal(tmp_path: Path) -> None:
    """A record's notes and figures are covered by no digest, and the summary prints them: an
    escape sequence a remote writer put there (clear the screen, rewrite a verdict) is shown
    as a replacement character."""
    config = RemoteConfig((tmp_path / "shared").as_uri(), push=True)
    cache = RemoteCache(config)
    key = "ab" * 32
    record = {"output": "cd" * 32, "kind": "file", "size": 1, "info": {"notes": ["PASS \x1b[2J\x1b[31mcleared"], "info": {"summary": "ok\x07"}}}
    cache.fs.makedirs(cache.action_path(key).rsplit("/", 1)[0], exist_ok=True)
    cache.fs.pipe_file(cache.action_path(key), json.dumps(record).encode())  # type: ignore[arg-type]
    found = cache.record(key)
    assert found is not None
    assert found.info == {"notes": ["PASS \ufffd[2J\ufffd[31mcleared"], "info": {"summary": "ok\ufffd"}}


def test_verify_never_lists_or_removes_files_behind_a_linked_folder_of_a_local_remote(tmp_path: Path) -> None:
    victim = tmp_path / "victim" / "ee"
    victim.mkdir(parents=True)
    looks_like_an_object = victim / ("ee" + "0" * 62)
    looks_like_an_object.write_bytes(b"not what its name says")
    root = tmp_path / "shared" / "v1"
    root.mkdir(parents=True)
    (root / "objects").symlink_to(tmp_path / "victim")
    cache = RemoteCache(RemoteConfig((tmp_path / "shared").as_uri(), push=True))
    assert cache.object_digests() == []
    with pytest.raises(RemoteTrouble, match="leads out of the remote"):
        cache.remove_object("ee" + "0" * 62, "file")
    assert looks_like_an_object.read_bytes() == b"not what its name says"
