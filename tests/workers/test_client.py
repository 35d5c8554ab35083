from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modelbuild.workers.client import read_status, stop_server
from modelbuild.workers.place import place_for


def test_a_status_naming_a_process_that_is_not_this_server_is_never_acted_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELBUILD_WORKERS_DIR", str(tmp_path / "w"))
    place = place_for(tmp_path / "cache")
    # A stale file whose pid now belongs to another process (here: this test's own).
    place.status.write_text(json.dumps({"pid": os.getpid(), "served": 1}))
    assert read_status(place) is None and not place.status.exists()
    place.status.write_text(json.dumps({"pid": os.getpid(), "served": 1}))
    assert stop_server(place) is None  # and this process is still here to say so
    for garbage in ("not json", "[]", '{"pid": "1"}', '{"pid": -5}'):
        place.status.write_text(garbage)
        assert read_status(place) is None
