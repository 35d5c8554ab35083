"""A whole build handed to the warm server (the thin client): same output, same exit codes,
the build's own streams, and Ctrl-C still stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from modelbuild.workers import pages
from modelbuild.workers.place import place_for
from tests.adversarial.test_user_code import run_artifact, two_folders
from tests.conftest import run_cli
from tests.workers.test_server import LIGHT, add_slow_model, alive, children, status_of, wait_for


def builds_served(root: Path) -> int:
    status = status_of(root)
    assert status is not None
    return int(status["builds"])


def test_a_build_handed_to_the_warm_server_writes_what_a_local_build_writes(tmp_path: Path) -> None:
    (tmp_path / "warm").mkdir()
    (tmp_path / "cold").mkdir()
    root = two_folders(tmp_path / "warm")
    cold_root = two_folders(tmp_path / "cold")
    first = run_cli(root, "build", "first", "--no-bench", env=LIGHT)  # no server yet: built here, and it starts one
    assert first.returncode == 0, first.stdout + first.stderr
    assert builds_served(root) == 0

    for folder in (root, cold_root):
        layers = folder / "first" / "models" / "layers.py"
        layers.write_text(layers.read_text().replace("* 2", "* 5"))
    handed = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.umask(0o077); from modelbuild.cli import main; sys.exit(main())", "build", "first", "second", "--no-bench"],
        cwd=root,
        env={**os.environ, **LIGHT},
        capture_output=True,
        text=True,
    )
    assert handed.returncode == 0, handed.stdout + handed.stderr
    assert builds_served(root) == 1
    assert "built" in handed.stdout  # the summary reached this process's own stdout
    assert (root / "build" / "first" / "first.pt").stat().st_mode & 0o077 == 0  # the client's umask, not the server's
    # After its answer the fork listed the pages it wrote, for the next spare to copy ahead.
    server_pid = int(status_of(root)["pid"])  # type: ignore[index]
    assert wait_for(lambda: pages.kept(place_for(root / "cache").pages, server_pid) != [])
    cold = run_cli(cold_root, "build", "first", "second", "--no-bench", "--cold", env=LIGHT)
    assert cold.returncode == 0, cold.stdout + cold.stderr
    for name in ("first", "second"):
        assert (root / "build" / name / f"{name}.pt").exists()
        assert run_artifact(root, name) == run_artifact(cold_root, name)
    assert run_artifact(root, "first") == [6.0] * 4  # 1 * 5 + 1: the edit was built, not an old result

    # A manifest error: exit code 2 and the message on this process's stderr, from the fork.
    manifest = root / "second" / "second.yaml"
    manifest.write_text(manifest.read_text().replace("shape: [1, 4]", "shape: [1, four]"))
    bad = run_cli(root, "build", "second", "--no-bench", env=LIGHT)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "second.yaml" in bad.stderr and "Traceback" not in bad.stderr
    assert builds_served(root) == 2

    # --cold, or a build whose environment the server was not started with, runs here.
    run_cli(root, "build", "first", "--no-bench", "--cold", "--force", env=LIGHT)
    assert builds_served(root) == 2
    stale = run_cli(root, "build", "first", "--no-bench", "--force", env={**LIGHT, "ATEN_CPU_CAPABILITY": "default"})
    assert stale.returncode == 0 and "replaced one that was stale" in stale.stdout, stale.stdout + stale.stderr
    assert builds_served(root) == 0  # the new server has served no handed-over build yet


def slow_build_running(root: Path, scratch: Path) -> tuple[subprocess.Popen, int, dict, Path]:
    """A handed-over build of a model whose stage sleeps: (the client, the stage's pid, the
    server's status, the marker that makes it sleep)."""
    assert run_cli(root, "build", "first", "--no-bench", env=LIGHT).returncode == 0  # starts the server
    server = status_of(root)
    assert server is not None
    marker, started = add_slow_model(root, scratch)
    marker.write_text("")
    build = subprocess.Popen(
        [sys.executable, "-m", "modelbuild", "build", "first/slow.yaml", "--no-bench"],
        cwd=root,
        env={**os.environ, **LIGHT},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not wait_for(lambda: started.exists() and started.read_text() != "", 120):
        build.kill()
        raise AssertionError("the slow stage did not start")
    return build, int(started.read_text()), server, marker


def built_again(root: Path, server: dict, marker: Path) -> None:
    """After the slow build was stopped, the next build of the model (no longer slow) succeeds
    on the same server: nothing the stopped build left behind is in its way."""
    marker.unlink()
    again = run_cli(root, "build", "first/slow.yaml", "--no-bench", env=LIGHT)
    assert again.returncode == 0, again.stdout + again.stderr
    assert status_of(root)["pid"] == server["pid"]  # type: ignore[index]


def test_ctrl_c_stops_a_handed_over_build_and_its_stage(tmp_path: Path) -> None:
    root = two_folders(tmp_path)
    build, stage, server, marker = slow_build_running(root, tmp_path)
    try:
        forks = children(server["pid"])
        assert builds_served(root) == 1 and len(forks) == 2 and stage in forks  # the build's fork and its stage's
        build.send_signal(signal.SIGINT)
        _, err = build.communicate(timeout=60)
        assert build.returncode == 130, err
        assert wait_for(lambda: not any(alive(pid) for pid in forks), 20), "a handed-over build or its stage outlived Ctrl-C"
        assert alive(server["pid"])
    finally:
        if build.poll() is None:
            build.kill()
    built_again(root, server, marker)


def test_a_handed_over_build_that_dies_is_reported_and_takes_its_stage_with_it(tmp_path: Path) -> None:
    """The fork running the build is killed (out of memory, say): the client says so and
    fails; the stage it was waiting for is stopped; the cache is left as a build killed at
    that point leaves it, so the next build succeeds."""
    root = two_folders(tmp_path)
    build, stage, server, marker = slow_build_running(root, tmp_path)
    try:
        coordinator = next(pid for pid in children(server["pid"]) if pid != stage)
        os.kill(coordinator, signal.SIGKILL)
        _, err = build.communicate(timeout=60)
        assert build.returncode == 1 and "the warm server's build process died" in err, err
        assert wait_for(lambda: not alive(stage), 20), "the stage of a dead handed-over build is still running"
        assert alive(server["pid"])
    finally:
        if build.poll() is None:
            build.kill()
    built_again(root, server, marker)


def test_the_client_hands_over_before_importing_the_command_line(tmp_path: Path) -> None:
    """The thin client's whole point: a handed-over build costs the interpreter's start and
    little more, so this process never imports the parser, the manifest loader or YAML."""
    root = two_folders(tmp_path)
    assert run_cli(root, "build", "first", "--no-bench", env=LIGHT).returncode == 0  # starts the server
    assert wait_for(lambda: (status_of(root) or {}).get("state") == "ready", 60)
    heavy = ("modelbuild.cli.commands", "modelbuild.manifest.project", "modelbuild.manifest.parse", "yaml", "argparse", "dataclasses")
    code = "import sys; from modelbuild.cli import main; rc = main(['build', 'first', '--no-bench']); "
    code += f"print(rc, sorted(m for m in {heavy} if m in sys.modules))"
    handed = subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, **LIGHT}, capture_output=True, text=True)
    assert handed.returncode == 0, handed.stdout + handed.stderr
    assert handed.stdout.strip().splitlines()[-1] == "0 []", handed.stdout
    assert builds_served(root) == 1
    # The record the fork left (written after the client had its answer) answers the next
    # build, run here or handed over alike.
    assert wait_for((root / "cache" / "noop.json").exists, 10)
    unchanged = "(no file changed since the last build)"
    here = run_cli(root, "build", "first", "--no-bench", "--cold", env=LIGHT)
    assert unchanged in here.stdout, here.stdout + here.stderr
    again = run_cli(root, "build", "first", "--no-bench", env=LIGHT)
    assert unchanged in again.stdout and builds_served(root) == 2, again.stdout + again.stderr


def test_options_that_run_a_build_here_are_seen_before_parsing_and_again_after() -> None:
    from modelbuild.cli.commands import parser
    from modelbuild.workers.delegate import _asks_to_run_here, here_because
    from modelbuild.workers.handover import _runs_in_client

    assert _asks_to_run_here(["manifests", "--col"])  # argparse takes an unambiguous prefix
    assert _asks_to_run_here(["--scheduler=local:2"]) and _asks_to_run_here(["--dry-run"])
    assert not _asks_to_run_here(["-j", "2", "--model", "gpt", "--no-bench"])
    assert not _asks_to_run_here(["--", "--cold"])  # after "--", a path
    assert here_because(parser().parse_args(["build", "--cold"])) == "--cold"
    assert here_because(parser().parse_args(["build", "--scheduler", "local:1"])) == "--scheduler"
    assert here_because(parser().parse_args(["build", "manifests"])) is None
    assert here_because(parser().parse_args(["plan"])) == "the plan command"
    # In the fork, from the real parser: an option the quick look missed sends the build back.
    assert _runs_in_client(["build", "manifests", "--cold"])[0] == "--cold"
    assert _runs_in_client(["build", "--jobs", "nope"]) == (None, None)  # the fork prints the usage error itself
    assert _runs_in_client(["build", "--no-bench"])[1].no_bench


def test_the_settings_the_client_keeps_follow_every_edit(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The thin client keeps modelbuild.toml's table as JSON by the file's stat signature: an
    edit that keeps size and mtime (only ctime moves) is still read anew, and a kept copy
    someone corrupted is parsed again, never trusted."""
    from modelbuild.workers.delegate import _remembered_toml

    monkeypatch.setenv("MODELBUILD_WORKERS_DIR", str(tmp_path / "private"))
    settings = tmp_path / "modelbuild.toml"
    settings.write_text('cache_dir = "aaa"\n')
    assert _remembered_toml(settings) == {"cache_dir": "aaa"}
    kept = next((tmp_path / "private").glob("settings-*.json"))
    stat = settings.stat()
    settings.write_text('cache_dir = "bbb"\n')
    os.utime(settings, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _remembered_toml(settings) == {"cache_dir": "bbb"}
    kept.write_text("{not json")
    assert _remembered_toml(settings) == {"cache_dir": "bbb"}
    kept.write_text('{"signature": "forged", "table": {"cache_dir": "elsewhere"}}')
    assert _remembered_toml(settings) == {"cache_dir": "bbb"}
