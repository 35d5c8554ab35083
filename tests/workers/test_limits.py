"""A fork of the warm server runs under the build's resource limits and nice level, not
those of whoever started the server; a limit it cannot take sends the work to a fresh
process (modelbuild/workers/limits.py)."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from modelbuild.workers import limits
from tests.adversarial.test_user_code import run_artifact, two_folders
from tests.workers.test_delegate import builds_served
from tests.workers.test_server import LIGHT, status_of

RECORDER = """

def _record_limits():
    import json, os, resource
    where = os.environ.get("MB_TEST_LIMITS")
    if where:
        with open(where, "a") as out:
            out.write(json.dumps([resource.getrlimit(resource.RLIMIT_NOFILE)[0], os.getpriority(os.PRIO_PROCESS, 0), os.getpid()]) + "\\n")


_record_limits()
"""


def _in_child(body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", body], capture_output=True, text=True)


def test_a_process_takes_lower_limits_and_a_higher_nice_level() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limits.current()
    wanted["rlimits"]["RLIMIT_NOFILE"] = [min(soft, 200), hard]
    wanted["nice"] = wanted["nice"] + 3
    result = _in_child(
        "import json, os, resource; from modelbuild.workers import limits; "
        f"limits.adopt(json.loads({json.dumps(json.dumps(wanted))})); "
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], os.getpriority(os.PRIO_PROCESS, 0))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(min(soft, 200)), str(wanted["nice"])]


def test_a_finite_memory_limit_is_refused_and_nothing_changes() -> None:
    wanted = limits.current()
    wanted["rlimits"]["RLIMIT_AS"] = [64 << 30, resource.RLIM_INFINITY]
    wanted["rlimits"]["RLIMIT_NOFILE"] = [100, wanted["rlimits"]["RLIMIT_NOFILE"][1]]  # after RLIMIT_AS: never reached
    with pytest.raises(limits.LimitsRefused, match="RLIMIT_AS"):
        limits.adopt(wanted)
    assert resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] != 100


def test_a_fork_without_the_privilege_to_loosen_its_limits_says_so_and_how_to_get_them() -> None:
    """A server started by `nice -n 5 modelbuild build` (as a user without privileges) cannot
    give a later build nice 0: the fork refuses, naming the way out."""
    result = _in_child(
        "import os, resource; from modelbuild.workers import limits\n"
        "wanted = limits.current()\n"
        "os.setpriority(os.PRIO_PROCESS, 0, wanted['nice'] + 5)\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 64), min(hard, 64)))\n"
        "if os.getuid() == 0:\n"
        "    os.setuid(65534)  # root may loosen anything: be nobody, as a user is\n"
        "try:\n"
        "    limits.adopt(wanted)\n"
        "except limits.LimitsRefused as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "cannot be set in the warm server's process" in result.stdout and "modelbuild workers stop" in result.stdout, result.stdout


def test_unknown_limits_are_ignored_and_equal_ones_cost_nothing() -> None:
    wanted = limits.current()
    wanted["rlimits"]["RLIMIT_FROM_ANOTHER_PLATFORM"] = [1, 1]
    limits.adopt(wanted)  # nothing to change, nothing raised
    limits.adopt(None)


def _build(root: Path, record: Path, before: Callable[[], Any] | None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "modelbuild", "build", "first", "--no-bench"],
        cwd=root,
        env={**os.environ, **LIGHT, "MB_TEST_LIMITS": str(record)},
        capture_output=True,
        text=True,
        preexec_fn=before,
    )


def _edit(root: Path, factor: int) -> None:
    layers = root / "first" / "models" / "layers.py"
    layers.write_text(re.sub(r"x \* \d+", f"x * {factor}", layers.read_text()))


def test_warm_forks_take_the_builds_limits_or_leave_the_work_to_fresh_processes(tmp_path: Path) -> None:
    root = two_folders(tmp_path)
    tiny = root / "first" / "models" / "tiny.py"
    tiny.write_text(tiny.read_text() + RECORDER)
    record = tmp_path / "limits.jsonl"
    started = _build(root, record, None)  # starts the server, under this test's limits
    assert started.returncode == 0, started.stdout + started.stderr
    server = status_of(root)
    assert server is not None and server["state"] == "ready"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nice = os.getpriority(os.PRIO_PROCESS, 0)

    def tighter() -> None:  # `ulimit -n 300; nice -n 4 modelbuild build`
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(300, soft), hard))
        os.setpriority(os.PRIO_PROCESS, 0, nice + 4)

    record.unlink(missing_ok=True)
    _edit(root, 5)
    handed = _build(root, record, tighter)
    assert handed.returncode == 0, handed.stdout + handed.stderr
    assert builds_served(root) == 1  # handed over, and its stages ran in forks of the server
    seen = [json.loads(line) for line in record.read_text().splitlines()]
    assert seen and all(pid != os.getpid() for *_, pid in seen)
    assert {(limit, level) for limit, level, _ in seen} == {(min(300, soft), nice + 4)}, seen
    assert run_artifact(root, "first") == [6.0] * 4

    # The next build asks for nothing special: the server's forks are back to its limits.
    record.unlink()
    _edit(root, 7)
    plain = _build(root, record, None)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert {(limit, level) for limit, level, _ in (json.loads(line) for line in record.read_text().splitlines())} == {(soft, nice)}

    # A finite address-space limit would count the server's loaded libraries: the build runs
    # here, its stages in fresh processes, and it says why.
    def memory_limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (64 << 30, resource.RLIM_INFINITY))

    _edit(root, 9)
    served = builds_served(root)
    limited = _build(root, record, memory_limited)
    assert limited.returncode == 0, limited.stdout + limited.stderr
    assert builds_served(root) == served  # not handed over
    assert "RLIMIT_AS" in limited.stderr and "fresh processes" in limited.stderr, limited.stdout + limited.stderr
    assert run_artifact(root, "first") == [10.0] * 4
    assert status_of(root)["pid"] == server["pid"]  # type: ignore[index]
