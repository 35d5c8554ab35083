from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelbuild.workers.identity import differences, identity, relevant_environment, search_path


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


def test_the_builds_own_folder_on_sys_path_is_not_a_difference(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # PYTHONPATH=/path/to/project, built from that project: the server starts in / and is told
    # the build's folder; without that it kept the entry the build dropped, and was stale forever.
    monkeypatch.setattr(sys, "path", ["/the/script", str(tmp_path), "/usr/lib/python3/site"])
    monkeypatch.chdir(tmp_path)
    build = search_path()
    monkeypatch.chdir("/")
    assert search_path(str(tmp_path)) == build == ["/usr/lib/python3/site"]
    assert search_path() != build


def test_a_fork_takes_the_identity_its_server_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelbuild.workers import identity as module

    checked = {**identity(), "code": "checked by the server"}
    monkeypatch.setattr(module, "_CHECKED", None)
    module.checked(checked)
    assert identity() == checked and identity() is not identity()  # a copy each time
    assert identity(here="/")["code"] != "checked by the server"  # another folder: computed
