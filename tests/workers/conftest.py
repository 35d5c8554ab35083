"""Warm-worker tests start real servers; every one of them is stopped when the session ends."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def stop_servers_at_the_end() -> Iterator[None]:
    yield
    for status in Path(os.environ["MODELBUILD_WORKERS_DIR"]).glob("*.json"):
        try:
            os.kill(int(json.loads(status.read_text())["pid"]), signal.SIGTERM)
        except (OSError, ValueError, KeyError):
            pass
