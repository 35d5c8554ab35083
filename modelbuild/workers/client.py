"""The build's side of warm workers: start or replace the server, hand it stages.

``WarmPool`` is a ``concurrent.futures.Executor``, so the executor is the same for warm, cold
and Dask pools. ``prepare`` starts (or checks) the server in a thread at the start of a build,
so its imports overlap the planning; the first stage waits only for what is left.
"""

from __future__ import annotations

import concurrent.futures as futures
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from modelbuild.workers import caller, wire
from modelbuild.workers.delegate import DELEGATED
from modelbuild.workers.identity import differences, identity
from modelbuild.workers.place import Place
from modelbuild.workers.status import is_server, read_status

START_WAIT = 20.0  # seconds for a new server to open its socket (it imports after)


class WorkerTrouble(RuntimeError):
    """The warm server could not take or finish a stage (reported as that stage's failure)."""


def stop_server(place: Place, wait: float = 10.0) -> dict[str, Any] | None:
    """Stop the place's server (its running stages are killed); its last status, or None."""
    status = read_status(place)
    if status is None:
        return None
    pid = int(status["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return status
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and is_server(pid, place):
        time.sleep(0.05)
    if is_server(pid, place):
        os.kill(pid, signal.SIGKILL)
    place.status.unlink(missing_ok=True)
    place.socket.unlink(missing_ok=True)
    return status


def ensure_server(place: Place, idle: float, mine: dict[str, Any]) -> str | None:
    """A live server with this build's identity at ``place``: the one there, or a new one.
    Returns why an old server was replaced, if one was."""
    with open(place.lock, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two builds (or a build and `workers stop`) start one server
        status = read_status(place)
        replaced = None
        if status is not None:
            changed = differences(status.get("identity", {}), mine)
            if not changed and place.socket.exists():
                return None
            replaced = "; ".join(changed) or "its socket was gone"
            stop_server(place)
        _rotate(place.log)
        with open(place.log, "ab") as log:
            command = [sys.executable, "-m", "modelbuild.workers.server", "--folder", str(place.folder), "--name", place.name, "--idle", str(idle)]
            command += ["--here", os.getcwd()]  # its identity leaves out this build's folder, as the build's does
            subprocess.Popen(command, cwd="/", stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
        deadline = time.monotonic() + START_WAIT
        while not (place.socket.exists() and place.status.exists()):
            if time.monotonic() > deadline:
                raise WorkerTrouble(f"the warm worker server did not start within {START_WAIT:.0f}s; see {place.log}, or build with --cold")
            time.sleep(0.02)
        return replaced


class WarmPool(futures.Executor):
    """Stages run in forks of the project's warm server, ``jobs`` at a time."""

    def __init__(self, place: Place, idle: float, jobs: int) -> None:
        self.place = place
        self.idle = idle
        self.identity = identity()
        self.replaced: str | None = None  # why this build replaced a stale server
        self.trouble: str | None = None  # why stages ran in fresh processes after all
        self._jobs = max(1, jobs)
        self._fallback: futures.Executor | None = None
        self._threads = futures.ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="modelbuild-warm")
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()  # the open connections, the fallback pool
        self._restarting = threading.Lock()  # one restart at a time
        self._ready: futures.Future[None] = futures.Future()
        self._closing = False

    def prepare(self) -> "WarmPool":
        """Start or check the server now, in the background (the build plans meanwhile). A build
        handed over to the server runs in a fork of it: its server is there, with its identity,
        and checking costs a thread that competes with the planning (should it have stopped
        meanwhile, the first stage finds it gone and starts one)."""
        if os.environ.get(DELEGATED):
            self._ready.set_result(None)
            return self

        def start() -> None:
            try:
                self.replaced = ensure_server(self.place, self.idle, self.identity)
                self._ready.set_result(None)
            except BaseException as exc:  # noqa: BLE001 - raised again by the first stage that needs the server
                self._ready.set_exception(exc)

        threading.Thread(target=start, name="modelbuild-warm-start", daemon=True).start()
        return self

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:
        from modelbuild.graph.worker import run_stage

        if fn is not run_stage or kwargs:
            raise TypeError("a WarmPool runs stages (modelbuild.graph.worker.run_stage) only")
        return self._threads.submit(self._run, args)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:  # interrupted: the server kills the stages whose build went away
            self._closing = True
            with self._lock:
                for sock in self._open:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        self._threads.shutdown(wait=wait, cancel_futures=cancel_futures)
        if self._fallback is not None:
            self._fallback.shutdown(wait=wait, cancel_futures=cancel_futures)

    def _run(self, job: tuple[Any, ...]) -> Any:
        try:
            self._ready.result()
        except Exception as exc:  # noqa: BLE001 - no server: the build goes on cold, and says so
            return self._cold(job, f"the server could not start ({type(exc).__name__}: {exc})")
        for attempt in range(2):
            kind, payload = self._ask(job)
            if kind == "done":
                return payload
            if kind == "cold":  # the fork cannot take this build's limits (workers/limits.py)
                return self._cold(job, payload)
            if kind == "crashed":
                last = payload.strip().splitlines()[-1]
                raise WorkerTrouble(f"the warm worker failed before or after the stage: {last}; build with --cold if it keeps happening")
            if attempt == 0 and not self._closing:  # "stale" or "gone": a fresh server, once
                try:
                    with self._restarting:
                        replaced = ensure_server(self.place, self.idle, self.identity)
                except Exception as exc:  # noqa: BLE001
                    return self._cold(job, f"the server could not be restarted ({type(exc).__name__}: {exc})")
                self.replaced = "; ".join(payload) if kind == "stale" else replaced or self.replaced
        if self._closing:
            raise WorkerTrouble("interrupted")
        return self._cold(job, "the server went away twice during this build")

    def _cold(self, job: tuple[Any, ...], why: str) -> Any:
        """Run the stage in a fresh process, as ``--cold`` would: warm workers are an
        optimisation, and trouble with them must not fail a build."""
        from modelbuild.graph.executor import process_pool
        from modelbuild.graph.worker import run_stage

        with self._lock:
            self.trouble = self.trouble or why
            if self._fallback is None:
                self._fallback = process_pool(self._jobs)
            fallback = self._fallback
        return fallback.submit(run_stage, *job).result()

    def _ask(self, job: tuple[Any, ...]) -> tuple[str, Any]:
        """The server's answer: ("done", outcome), ("crashed", traceback), ("stale", what
        changed), ("cold", why the fork cannot run it), or ("gone", None) when no server took
        the request."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with self._lock:
            self._open.add(sock)
        try:
            request = {
                "kind": "run",
                "identity": self.identity,
                "job": job,
                **caller.context(),
            }
            try:
                sock.connect(str(self.place.socket))
                wire.send(sock, request)
            except OSError:  # no socket, nobody listening, reset while sending
                return ("gone", None)
            try:
                return wire.receive(sock)
            except (EOFError, OSError):
                if self._closing:
                    raise WorkerTrouble("interrupted") from None
                raise WorkerTrouble("its process (a fork of the warm server) ended without an answer: killed, or out of memory; see the stage's log") from None
        finally:
            with self._lock:
                self._open.discard(sock)
            sock.close()


def _rotate(log: Path, limit: int = 5 << 20) -> None:
    """A server's log is appended to by every server of the project: past ``limit`` bytes the
    old one becomes ``.log.1`` (replacing the one before)."""
    try:
        if log.stat().st_size > limit:
            os.replace(log, log.with_name(log.name + ".1"))
    except FileNotFoundError:
        pass
