"""Remotes for the tests: a ``file://`` folder, and a real S3 API on 127.0.0.1 (moto's server,
in its own process, so a test can stop it mid-build), reached through s3fs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from modelbuild.remote.config import RemoteConfig


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# With authentication on, moto re-signs werkzeug's decoded URL, so a list prefix holding "/"
# fails its signature check; handed the raw URI, it checks what the client signed.
RAW_URI_SERVER = (
    "import sys, flask\n"
    "flask.Request.url = property(lambda r: f\"{r.scheme}://{r.host}{r.environ.get('RAW_URI') or r.environ['REQUEST_URI']}\")\n"
    "from moto.server import main\n"
    "main(sys.argv[1:])\n"
)


class MotoServer:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", RAW_URI_SERVER, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def enforce_policies(self, bucket: str) -> dict[str, tuple[str, str]]:
        """Users with IAM policies, enforced from now on: a writer (s3:*) and a reader (get and
        list only). Returns each one's (access key, secret)."""
        import json
        import urllib.request

        import boto3

        setup = {"endpoint_url": self.endpoint, "region_name": "us-east-1", "aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
        iam = boto3.client("iam", **setup)
        resources = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
        policies = {"writer": ["s3:*"], "reader": ["s3:GetObject", "s3:ListBucket"]}
        keys = {}
        for user, actions in policies.items():
            iam.create_user(UserName=user)
            document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]}
            iam.put_user_policy(UserName=user, PolicyName="cache", PolicyDocument=json.dumps(document))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request).read()
        return keys

    def client(self, key: str = "testing", secret: str = "testing") -> object:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials and endpoint where every AWS client looks: the environment."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_server.endpoint,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_remote(moto_server: MotoServer, aws_env: dict[str, str]) -> RemoteConfig:
    bucket = f"team-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    return RemoteConfig(url=f"s3://{bucket}/modelbuild", push=True)


@pytest.fixture
def file_remote(tmp_path: Path) -> RemoteConfig:
    return RemoteConfig(url=(tmp_path / "shared-disk").as_uri(), push=True)


@pytest.fixture(params=["file", "s3"])
def remote(request: pytest.FixtureRequest) -> RemoteConfig:
    return request.getfixturevalue(f"{request.param}_remote")
