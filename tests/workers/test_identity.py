from __future__ import annotations

import pytest

from modelbuild.workers.identity import differences, identity, relevant_environment


def test_a_variable_read_at_import_time_changes_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    before = identity()
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    after = identity()
    assert differences(before, after) == ["environment: ATEN_CPU_CAPABILITY, OMP_NUM_THREADS"]
    assert differences(after, identity()) == []


def test_variables_that_only_steer_the_build_do_not() -> None:
    kept = relevant_environment(
        {"MODELBUILD_WORKERS": "warm", "MODELBUILD_FASTPATH": "0", "MODELBUILD_REMOTE": "s3://x", "TERM": "xterm", "COLUMNS": "80", "MODELBUILD_X": "1"}
    )
    assert kept == {"MODELBUILD_X": "1"}


def test_differences_say_what_changed() -> None:
    old = identity()
    new = {**old, "tools": {**old["tools"], "torch": "9.9.9"}, "code": "other", "python": ["/other/python", "3.12"]}
    said = differences(old, new)
    assert "modelbuild's code changed" in said and "another interpreter" in said
    assert f"torch {old['tools']['torch']} -> 9.9.9" in said
