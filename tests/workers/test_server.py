"""The warm server for real: a subprocess that forks a process per stage.

Most tests turn the warm-up off (``MODELBUILD_WORKERS_WARM_UP=0``: a plain fork server, fast
to start); the byte-identity test keeps it, since the warm-up is what could leak into results.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelbuild.workers import pages
from modelbuild.workers.place import place_for
from tests.adversarial.test_user_code import LAYERS, MODULE, run_artifact, two_folders
from tests.conftest import copy_examples, run_cli

LIGHT = {"MODELBUILD_WORKERS": "warm", "MODELBUILD_WORKERS_WARM_UP": "0"}


def status_of(root: Path) -> dict | None:
    try:
        return json.loads(place_for(root / "cache").status.read_text())
    except FileNotFoundError:
        return None


def wait_for(condition, seconds: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def artifact_digests(root: Path, models: list[str]) -> dict[str, str]:
    found = {}
    for model in models:
        for path in sorted((root / "build" / model).rglob("*")):
            if path.is_file() and "logs" not in path.relative_to(root / "build").parts:
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    assert found
    return found


@pytest.mark.convert
def test_warm_builds_are_byte_identical_to_cold_ones_after_plugins_and_same_named_modules(tmp_path: Path) -> None:
    roots = {}
    for mode in ("warm", "cold"):
        root = copy_examples(tmp_path / mode)
        for name, offset, factor in (("first", 1, 2), ("second", 10, 3)):  # two models/tiny.py with other code
            folder = root / name
            (folder / "models").mkdir(parents=True)
            (folder / "models" / "__init__.py").write_text("")
            (folder / "models" / "tiny.py").write_text(MODULE.format(offset=offset))
            (folder / "models" / "layers.py").write_text(LAYERS.format(factor=factor))
            (folder / f"{name}.yaml").write_text(
                f"name: {name}\nsource: {{factory: models.tiny:build}}\ninputs: [{{name: x, shape: [1, 4]}}]\n"
                "outputs: [{name: y, select: out}]\ntargets: {torchscript: {}, onnx: {}}\n"
            )
        # smooth without its plugin: coremltools does not know aten::celu, warm or cold.
        bare = (root / "manifests" / "smooth.yaml").read_text().replace("plugins: [plugins.celu]\n", "").replace("name: smooth", "name: bare")
        (root / "manifests" / "bare.yaml").write_text(bare)
        roots[mode] = root
    env = {"MODELBUILD_WORKERS": "warm"}
    runs = {}
    for mode, root in roots.items():
        flags = ["--no-bench"] + (["--cold"] if mode == "cold" else [])
        built = run_cli(root, "build", "manifests/smooth.yaml", "first", "second", "manifests/gpt.yaml", *flags, env=env)
        assert built.returncode == 0, built.stdout + built.stderr
        status = status_of(root)
        assert (status is None) if mode == "cold" else (status is not None and status["served"] >= 10)  # --cold never starts one
        runs[mode] = run_cli(root, "build", "manifests/bare.yaml", "--target", "coreml", *flags, env=env)
    models = ["smooth", "first", "second", "gpt"]
    assert artifact_digests(roots["warm"], models) == artifact_digests(roots["cold"], models)
    # The plugin registered by smooth's conversion did not outlive it in the warm server.
    for mode in ("warm", "cold"):
        assert runs[mode].returncode == 1, runs[mode].stdout
        assert "celu" in runs[mode].stdout + runs[mode].stderr
    assert run_artifact(roots["warm"], "first") == [3.0] * 4 and run_artifact(roots["warm"], "second") == [13.0] * 4


def test_status_stop_and_a_stale_server_replaced(tmp_path: Path) -> None:
    root = two_folders(tmp_path)
    said = run_cli(root, "workers", "status", env=LIGHT)
    assert said.returncode == 0 and "no warm worker server for this project (builds start one on first use)" in said.stdout
    built = run_cli(root, "build", "first", "--no-bench", env=LIGHT)
    assert built.returncode == 0, built.stdout + built.stderr
    first = status_of(root)
    assert first is not None and first["served"] >= 2 and alive(first["pid"])
    # The build has its answers: no fork of the server still counts as work (a fork that is
    # exiting once made this say "1 running; busy").
    assert wait_for(lambda: (status_of(root) or {}).get("running") == 0, 5)
    said = run_cli(root, "workers", "status", env=LIGHT)
    assert f"warm worker server: pid {first['pid']}, ready" in said.stdout and "stops after" in said.stdout, said.stdout

    # Garbage on the socket is refused; the server keeps serving.
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(place_for(root / "cache").socket))
        sock.sendall(b"\x00\x00\x00\x00\x00\x00\x00\x05hello")
    # A variable the libraries read when they load: this server is stale for that build.
    stale_env = {**LIGHT, "ATEN_CPU_CAPABILITY": "default"}
    said = run_cli(root, "workers", "status", env=stale_env)
    assert "stale: the next build replaces it (environment: ATEN_CPU_CAPABILITY)" in said.stdout, said.stdout
    rebuilt = run_cli(root, "build", "first", "--no-bench", "--force", env=stale_env)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "a new server replaced one that was stale (environment: ATEN_CPU_CAPABILITY)" in rebuilt.stdout
    second = status_of(root)
    assert second is not None and second["pid"] != first["pid"] and second["served"] >= 2
    assert wait_for(lambda: not alive(first["pid"]))

    # The build's working folder on the path (PYTHONPATH=. or the project's own path) is not a
    # change: the server starts in / and is told the folder of the build that started it.
    once = run_cli(root, "build", "second", "--no-bench", "--force", env={**stale_env, "PYTHONPATH": str(root)})
    assert "stale (environment: PYTHONPATH)" in once.stdout  # the variable itself changed
    second = status_of(root)  # type: ignore[assignment]
    again = run_cli(root, "build", "second", "--no-bench", "--force", env={**stale_env, "PYTHONPATH": str(root)})
    assert again.returncode == 0 and "replaced" not in again.stdout, again.stdout + again.stderr
    assert second is not None and status_of(root)["pid"] == second["pid"]  # type: ignore[index]

    stopped = run_cli(root, "workers", "stop", env=LIGHT)
    assert f"stopped the warm worker server (pid {second['pid']}" in stopped.stdout
    assert wait_for(lambda: not alive(second["pid"]), 10) and status_of(root) is None
    assert not place_for(root / "cache").socket.exists()
    assert "no warm worker server was running" in run_cli(root, "workers", "stop", env=LIGHT).stdout
    cold = run_cli(root, "build", "second", "--no-bench", "--cold", env=LIGHT)
    assert cold.returncode == 0 and status_of(root) is None


def test_an_idle_server_stops_by_itself(tmp_path: Path) -> None:
    root = two_folders(tmp_path)
    built = run_cli(root, "build", "first", "--no-bench", env={**LIGHT, "MODELBUILD_WORKERS_IDLE": "1"})
    assert built.returncode == 0, built.stdout + built.stderr
    status = status_of(root)
    assert status is not None and status["idle_timeout"] == 1
    assert wait_for(lambda: not alive(status["pid"]), 20)
    assert status_of(root) is None and not place_for(root / "cache").socket.exists()


SLOW = """\
import os
import time

import torch


class Tiny(torch.nn.Module):
    def forward(self, x):
        return {{"out": x * 2}}


def build():
    if os.path.exists({marker!r}):
        with open({started!r}, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(300)
    return Tiny()
"""


def add_slow_model(root: Path, scratch: Path) -> tuple[Path, Path]:
    """first/slow.yaml, whose factory sleeps while ``marker`` exists, after writing its pid
    to ``started``: (marker, started)."""
    marker, started = scratch / "slow-on", scratch / "slow-started"
    (root / "first" / "models" / "slow.py").write_text(SLOW.format(marker=str(marker), started=str(started)))
    (root / "first" / "slow.yaml").write_text(
        "name: slow\nsource: {factory: models.slow:build}\ninputs: [{name: x, shape: [1, 4]}]\noutputs: [{name: y, select: out}]\ntargets: {torchscript: {}}\n"
    )
    return marker, started


def test_a_killed_build_takes_its_stage_with_it_and_a_killed_stage_fails_only_itself(tmp_path: Path) -> None:
    root = two_folders(tmp_path)
    marker, started = add_slow_model(root, tmp_path)
    marker.write_text("")
    env = {**os.environ, **LIGHT}
    build = subprocess.Popen([sys.executable, "-m", "modelbuild", "build", "first/slow.yaml", "--no-bench"], cwd=root, env=env)
    try:
        assert wait_for(started.exists, 120)
        status = status_of(root)
        assert status is not None and status["running"] == 1
        forks = children(status["pid"])
        assert len(forks) == 1
        build.send_signal(signal.SIGKILL)  # the build dies: nobody will read what the stage makes
        build.wait()
        assert wait_for(lambda: not alive(forks[0]), 15), "the stage of a build that went away is still running"
        assert alive(status["pid"])
    finally:
        if build.poll() is None:
            build.kill()

    # Now the stage's own process dies (out of memory, say): that stage fails, the server lives.
    started.unlink()
    build = subprocess.Popen(
        [sys.executable, "-m", "modelbuild", "build", "first/slow.yaml", "--no-bench"], cwd=root, env=env, stdout=subprocess.PIPE, text=True
    )
    assert wait_for(lambda: started.exists() and started.read_text() != "", 120)
    os.kill(int(started.read_text()), signal.SIGKILL)  # the stage's process (the build itself may run in a fork of the server too)
    out, _ = build.communicate(timeout=120)
    assert build.returncode == 1 and "worker process died" in out, out
    marker.unlink()
    result = run_cli(root, "build", "first/slow.yaml", "--no-bench", env=LIGHT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert status_of(root)["pid"] == status["pid"]  # type: ignore[index]


def children(pid: int, spare: bool = False) -> list[int]:
    """The server's live forks; without the spare waiting for the next request unless asked."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    waiting = None if spare else _spare_of(pid)
    return [child for child in found if alive(child) and child != waiting]


def _spare_of(server: int) -> int | None:
    for status_file in Path(os.environ["MODELBUILD_WORKERS_DIR"]).glob("*.json"):
        try:
            status = json.loads(status_file.read_text())
        except (OSError, ValueError):
            continue
        if status.get("pid") == server:
            return status.get("spare")
    return None


def test_a_spare_fork_takes_the_next_request_and_ends_with_the_server(tmp_path: Path) -> None:
    """The server forks before a request comes (forking a warm server costs 12 ms that a
    build would otherwise wait for): the spare takes the next build or stage, a new spare
    follows, a spare killed from outside is replaced, and stopping the server ends it."""
    root = two_folders(tmp_path)
    assert run_cli(root, "build", "first", "--no-bench", env=LIGHT).returncode == 0
    assert wait_for(lambda: (status_of(root) or {}).get("spare") is not None, 30)
    server, spare = status_of(root)["pid"], status_of(root)["spare"]  # type: ignore[index]
    assert alive(spare) and children(server, spare=True) == [spare] and children(server) == []

    layers = root / "first" / "models" / "layers.py"
    layers.write_text(layers.read_text().replace("* 2", "* 3"))
    assert run_cli(root, "build", "first", "--no-bench", env=LIGHT).returncode == 0
    assert wait_for(lambda: not alive(spare), 10), "the spare did not take the build (or outlived it)"
    assert wait_for(lambda: (status_of(root) or {}).get("spare") not in (None, spare), 10)
    assert run_artifact(root, "first") == [4.0] * 4  # 1 * 3 + 1: the edit was built

    killed = status_of(root)["spare"]  # type: ignore[index]
    os.kill(killed, signal.SIGKILL)
    assert wait_for(lambda: not alive(killed), 10)
    layers.write_text(layers.read_text().replace("* 3", "* 4"))
    again = run_cli(root, "build", "first", "--no-bench", env=LIGHT)
    assert again.returncode == 0, again.stdout + again.stderr
    assert run_artifact(root, "first") == [5.0] * 4
    assert wait_for(lambda: (status_of(root) or {}).get("spare") not in (None, killed), 10)

    last = status_of(root)["spare"]  # type: ignore[index]
    assert run_cli(root, "workers", "stop", env=LIGHT).returncode == 0
    assert wait_for(lambda: not alive(last), 10), "the spare outlived its server"


def test_builds_starting_at_once_share_one_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import concurrent.futures

    from modelbuild.workers.client import ensure_server, stop_server
    from modelbuild.workers.identity import identity

    monkeypatch.setenv("MODELBUILD_WORKERS_WARM_UP", "0")
    place = place_for(tmp_path / "cache")
    mine = identity()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: ensure_server(place, 60, mine), range(4)))
        status = json.loads(place.status.read_text())
        servers = [
            p for p in Path("/proc").iterdir() if p.name.isdigit() and b"modelbuild.workers.server" in _cmdline(p) and place.name.encode() in _cmdline(p)
        ]
        pids = {int(p.name) for p in servers if alive(int(p.name))}
        # A fork of a server (its spare, waiting for the next request) has the same command line.
        assert [pid for pid in pids if _parent(pid) not in pids] == [status["pid"]]
    finally:
        stop_server(place)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_a_server_that_cannot_start_leaves_the_build_cold_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelbuild.cli.commands import main
    from modelbuild.workers import client

    root = two_folders(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MODELBUILD_WORKERS", "warm")

    def broken(*args: object) -> None:
        raise client.WorkerTrouble("no room for a server")

    monkeypatch.setattr(client, "ensure_server", broken)
    assert main(["build", "first", "--no-bench"]) == 0
    said = capsys.readouterr()
    assert "warning: warm workers: the server could not start (WorkerTrouble: no room for a server); stages ran in fresh processes" in said.err
    assert run_artifact(root, "first") == [3.0] * 4
    assert status_of(root) is None


def test_a_spare_that_stopped_costs_one_build_a_wait_and_nothing_else(tmp_path: Path) -> None:
    """A spare that never reads its request (stopped, swapping): the client gives up waiting
    and builds itself; the server then kills the spare, so the descriptors it was sent (the
    client's stdout among them) are let go (a reader of that pipe would wait forever), and the
    server serves, makes spares and idles out as before."""
    root = two_folders(tmp_path)
    assert run_cli(root, "build", "first", "--no-bench", env=LIGHT).returncode == 0
    assert wait_for(lambda: (status_of(root) or {}).get("spare") is not None, 30)
    stopped = status_of(root)["spare"]  # type: ignore[index]
    os.kill(stopped, signal.SIGSTOP)
    try:
        layers = root / "first" / "models" / "layers.py"
        layers.write_text(layers.read_text().replace("* 2", "* 6"))
        piped = subprocess.run(
            f"{sys.executable} -m modelbuild build first --no-bench | cat",
            shell=True,
            cwd=root,
            env={**os.environ, **LIGHT},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "built" in piped.stdout, piped.stdout + piped.stderr
        assert run_artifact(root, "first") == [7.0] * 4
        assert wait_for(lambda: not alive(stopped), 15), "the stopped spare was not killed"
        assert wait_for(lambda: (status_of(root) or {}).get("running") == 0 and (status_of(root) or {}).get("spare") not in (None, stopped), 15)
    finally:
        try:
            os.kill(stopped, signal.SIGKILL)
        except ProcessLookupError:
            pass


SIGNALS = """\
import json
import signal

import torch


class Tiny(torch.nn.Module):
    def forward(self, x):
        return {{"out": x * 2}}


def build():
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    with open({record!r}, "w") as f:
        json.dump({{"sigchld_default": signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL, "wakeup": wakeup}}, f)
    return Tiny()
"""


def test_forks_do_not_inherit_the_servers_child_exit_wakeup(tmp_path: Path) -> None:
    """The server wakes when a fork ends (SIGCHLD written to a pipe); a fork that kept that
    handler would have its own children's exits interrupt it and write into the server's pipe."""
    root = two_folders(tmp_path)
    assert run_cli(root, "build", "first", "--no-bench", env=LIGHT).returncode == 0  # starts the server
    assert wait_for(lambda: (status_of(root) or {}).get("state") == "ready", 30)
    record = tmp_path / "signals.json"
    (root / "first" / "models" / "signals.py").write_text(SIGNALS.format(record=str(record)))
    (root / "first" / "signals.yaml").write_text(
        "name: signals\nsource: {factory: models.signals:build}\ninputs: [{name: x, shape: [1, 4]}]\n"
        "outputs: [{name: y, select: out}]\ntargets: {torchscript: {}}\n"
    )
    built = run_cli(root, "build", "first/signals.yaml", "--no-bench", env=LIGHT)
    assert built.returncode == 0, built.stdout + built.stderr
    assert (status_of(root) or {}).get("served", 0) >= 1  # its stages ran in the server's forks
    assert json.loads(record.read_text()) == {"sigchld_default": True, "wakeup": -1}


def test_the_server_wakes_when_a_fork_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from modelbuild.workers.server import Server

    monkeypatch.setenv("MODELBUILD_WORKERS_DIR", str(tmp_path / "workers"))
    server = Server(place_for(tmp_path / "cache"), 60.0, logging.getLogger("test"))
    before = signal.getsignal(signal.SIGCHLD)
    try:
        server._wake_on_child_exit()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        import select

        readable, _, _ = select.select([server.child_exits[0]], [], [], 30)
        assert readable == [server.child_exits[0]]
        os.waitpid(pid, 0)
    finally:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, before)
        server.listener.close()
        for fd in server.child_exits:
            os.close(fd)


@pytest.mark.parametrize("plant", ["fifo", "huge"])
def test_a_bad_page_list_costs_the_spare_nothing(tmp_path: Path, plant: str) -> None:
    """A FIFO at the spare's page list kept it waiting forever (every build then waited 30 s
    for it, and a piped reader longer); a 100 GB file made it fail, and the server forked
    spares in a tight loop. Now the spare copies nothing ahead, lives, and takes the build."""
    root = two_folders(tmp_path)
    assert run_cli(root, "build", "first", "--no-bench", env=LIGHT).returncode == 0
    assert wait_for(lambda: (status_of(root) or {}).get("spare") is not None, 30)
    listed = place_for(root / "cache").pages
    listed.unlink(missing_ok=True)
    if plant == "fifo":
        os.mkfifo(listed)
    else:
        with open(listed, "wb") as file:
            file.truncate(100 * 2**30)  # sparse: no disk used
    old = status_of(root)["spare"]  # type: ignore[index]
    os.kill(old, signal.SIGKILL)  # the next spare reads the planted list
    assert wait_for(lambda: (status_of(root) or {}).get("spare") not in (None, old), 10)
    spare = status_of(root)["spare"]  # type: ignore[index]
    time.sleep(1.5)
    assert alive(spare) and status_of(root)["spare"] == spare  # type: ignore[index]  # not dead, not replaced in a loop

    layers = root / "first" / "models" / "layers.py"
    layers.write_text(layers.read_text().replace("* 2", "* 3"))
    built = run_cli(root, "build", "first", "--no-bench", env=LIGHT)
    assert built.returncode == 0, built.stdout + built.stderr
    assert wait_for(lambda: not alive(spare), 10)  # it took the build
    # ...and ran it (a client that waits 30 s in vain builds here, silently): a handed-over
    # build lists its pages afterwards, in place of what was planted.
    assert wait_for(lambda: pages.kept(listed, status_of(root)["pid"]) != [], 10)  # type: ignore[index]
    assert run_artifact(root, "first") == [4.0] * 4
    assert run_cli(root, "workers", "stop", env=LIGHT).returncode == 0
