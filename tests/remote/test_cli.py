"""The remote from the command line, on a real example: push, pull, verify, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbuild.remote.cache import RemoteCache
from modelbuild.remote.config import RemoteConfig
from modelbuild.store.hashing import hash_tree
from tests.conftest import copy_examples, run_cli


def _artifacts(root: Path, model: str) -> dict[str, str]:
    return {p.name: hash_tree(p) for p in sorted((root / "build" / model).iterdir()) if p.name != "logs"}


@pytest.mark.convert
def test_push_pull_and_verify_a_file_remote(tmp_path: Path) -> None:
    url = (tmp_path / "shared").as_uri()
    first = copy_examples(tmp_path / "first")
    built = run_cli(first, "build", "manifests", "--model", "rmsnorm", "--no-bench")
    assert built.returncode == 0, built.stdout + built.stderr
    pushed = run_cli(first, "cache", "push", "manifests", "--model", "rmsnorm", "--no-bench", "--remote", url)
    assert pushed.returncode == 0, pushed.stderr
    assert f"to {url}:" in pushed.stdout and "objects uploaded" in pushed.stdout

    second = copy_examples(tmp_path / "second")
    pulled = run_cli(second, "cache", "pull", "manifests", "--model", "rmsnorm", "--no-bench", env={"MODELBUILD_REMOTE": url})
    assert pulled.returncode == 0, pulled.stderr
    assert "pulled" in pulled.stdout and "0 not on the remote" in pulled.stdout, pulled.stdout
    assert _artifacts(second, "rmsnorm") == _artifacts(first, "rmsnorm")
    after = run_cli(second, "build", "manifests", "--model", "rmsnorm", "--no-bench", "--remote", url)
    assert after.returncode == 0 and "nothing to do" in after.stdout and " built" not in after.stdout, after.stdout

    cache = RemoteCache(RemoteConfig(url))
    digest, kind = cache.object_digests()[0]
    cache.fs.pipe_file(cache.object_path(digest, kind), b"rot")
    checked = run_cli(second, "cache", "verify", "--remote", url)
    assert checked.returncode == 1 and f"corrupt on the remote: {digest}" in checked.stdout and "1 corrupt" in checked.stdout
    assert cache.fs.exists(cache.object_path(digest, kind))  # a reader reports; it never deletes
    repaired = run_cli(second, "cache", "verify", "--remote", url, env={"MODELBUILD_REMOTE_PUSH": "true"})
    assert repaired.returncode == 1 and "(removed;" in repaired.stdout
    assert not cache.fs.exists(cache.object_path(digest, kind))
    clean = run_cli(second, "cache", "verify", "--remote", url)
    assert clean.returncode == 0 and "0 corrupt" in clean.stdout


def test_commands_without_a_usable_remote_say_so(examples: Path) -> None:
    pull = run_cli(examples, "cache", "pull", "manifests")
    assert pull.returncode == 2 and "error: no remote cache: give --remote URL, set MODELBUILD_REMOTE" in pull.stderr
    bogus = run_cli(examples, "build", "manifests", "--remote", "bogus://bucket")
    assert bogus.returncode == 2 and "error: --remote: expected a URL fsspec can open" in bogus.stderr
    assert "Traceback" not in bogus.stderr + pull.stderr
    settings = examples / "modelbuild.toml"
    settings.write_text(settings.read_text() + '\n[remote]\nurl = "s3://team/cache"\noptions = { secret = "hunter2" }\n')
    leaked = run_cli(examples, "check", "manifests")
    assert leaked.returncode == 2 and "remote.options.secret: expected no credentials here" in leaked.stderr
    assert "hunter2" not in leaked.stderr


def test_an_unreachable_remote_never_fails_a_command_that_builds(examples: Path) -> None:
    """``check`` builds nothing and ``plan`` reads only the local cache: neither touches the remote."""
    env = {"MODELBUILD_REMOTE": "s3://nowhere/cache", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    plan = run_cli(examples, "plan", "manifests", "--model", "rmsnorm", env=env)
    assert plan.returncode == 0, plan.stderr
    verify = run_cli(examples, "cache", "verify", "--remote", env=env)
    assert verify.returncode == 1 and "could not be reached" in verify.stderr and "Traceback" not in verify.stderr
