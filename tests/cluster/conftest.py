"""The moto S3 server of the remote tests, shared."""

from tests.remote.conftest import aws_env, moto_server  # noqa: F401
