"""A team's second machine: building the examples from the remote cache vs building them.

    python bench/remote.py [--remote URL] [--model NAME ...] [--bench]

Makes two fresh copies of the example project. The first builds everything (timed) and
pushes to the remote; the second, with an empty local cache, builds from the remote (timed).
Both runs are in this one invocation, side by side. By default the remote is a real S3 API on
127.0.0.1 (moto's server, through s3fs); ``--remote file:///...`` or ``s3://...`` (with the
AWS environment) uses another. Prints both times, the ratio (the goal: at most 0.10) and
whether every artifact is byte-identical.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from modelbuild.store.hashing import hash_tree  # noqa: E402
from tests.conftest import copy_examples  # noqa: E402


def build(root: Path, args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "modelbuild", "build", "manifests", *args], cwd=root, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"build failed in {root}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    print(result.stdout.strip().splitlines()[-1])
    return elapsed


def artifacts(root: Path) -> dict[str, str]:
    build_dir = root / "build"
    return {str(p.relative_to(build_dir)): hash_tree(p) for p in sorted(build_dir.glob("*/*")) if p.name != "logs"}


def moto_remote(env: dict[str, str]) -> tuple[str, subprocess.Popen]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    env.update(
        {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    import boto3

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return f"s3://{bucket}/modelbuild", server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remote", default=None, help="the remote to use (default: a moto S3 server on 127.0.0.1)")
    parser.add_argument("--model", action="append", default=[], help="only these models (default: all the examples)")
    parser.add_argument("--bench", action="store_true", help="include the benchmark stages (default: --no-bench)")
    options = parser.parse_args()
    env = {**os.environ, "MODELBUILD_FASTPATH": "0"}
    env.pop("MODELBUILD_REMOTE", None)
    server = None
    url = options.remote
    if url is None:
        url, server = moto_remote(env)
    selection = [arg for name in options.model for arg in ("--model", name)] + ([] if options.bench else ["--no-bench"])
    work = Path(tempfile.mkdtemp(prefix="modelbuild-bench-remote-"))
    try:
        first, second = copy_examples(work / "ci"), copy_examples(work / "laptop")
        print(f"remote: {url}")
        full = build(first, [*selection, "--remote", url], {**env, "MODELBUILD_REMOTE_PUSH": "true"})
        fetched = build(second, [*selection, "--remote", url], {**env, "MODELBUILD_REMOTE_PUSH": "false"})
        same = artifacts(first) == artifacts(second)
        print()
        print(f"full build, pushing:          {full:8.1f} s")
        print(f"fresh clone, from the remote: {fetched:8.1f} s")
        print(f"ratio: {fetched / full:.3f} (goal: at most 0.10)")
        print(f"artifacts byte-identical: {same} ({len(artifacts(first))} artifacts)")
        if not same:
            raise SystemExit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if server is not None:
            server.kill()


if __name__ == "__main__":
    main()
