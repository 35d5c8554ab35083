"""The warm server: imports once, then forks one process per stage.

Started by a build (``python -m modelbuild.workers.server``) in its own session, so closing
the terminal does not stop it. It listens before it imports: a build connects at once and its
first stage waits only for what is left of the warm-up (the imports run while the build plans).

One thread, one loop: accept a request, check the peer is this user and the identity is the
server's, fork; the fork runs the stage exactly as a cold worker does and sends the outcome
back on the same connection. A thin client may also hand over a whole build with its standard
streams (``modelbuild.workers.delegate``): the fork then runs the command line itself. The server watches each running stage's connection: when the
build goes away (interrupted, killed) the stage's process group is killed, so no orphan keeps
writing into the cache. It stops after ``idle`` seconds with nothing to do, on ``workers
stop`` (SIGTERM), or when its socket is taken by a newer server.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from modelbuild.workers import caller, limits, pages, wire
from modelbuild.workers.identity import differences, identity
from modelbuild.workers.limits import LimitsRefused
from modelbuild.workers.place import Place

SPARE_BACKOFF = 1.0  # seconds before a spare that ended without a request is replaced


class Server:
    def __init__(self, place: Place, idle: float, log: logging.Logger, here: str | None = None) -> None:
        self.place = place
        self.idle = idle
        self.log = log
        self.identity = identity(here)
        self.running: dict[int, socket.socket | None] = {}  # fork pid -> its build's connection (None: being killed)
        self.threads: int | None = None
        self.doomed: dict[int, float] = {}  # fork pid -> when to kill it (its build closed the connection)
        self.served = 0
        self.builds: set[int] = set()  # the running forks that run a whole handed-over build
        self.served_builds = 0
        self.started = time.time()
        self.last_used = time.monotonic()
        self.stopping = False
        self.state = "warming"
        self.warm_seconds: dict[str, float] = {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.spare: tuple[int, socket.socket] | None = None  # a fork waiting for the next request, and its channel
        self.spare_died = 0.0  # when the last spare ended without a request (monotonic)
        self.child_exits = os.pipe()  # written to when a fork ends, so the loop wakes to reap it (see ``_wake_on_child_exit``)

    # -- life ------------------------------------------------------------------------------

    def serve(self) -> None:
        self._listen()
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        try:
            self._write_status()
            from modelbuild.workers.warmup import warm

            self.warm_seconds = warm(self.log)
            # What a handed-over build's fork runs first, imported once here rather than in
            # every fork (where importing also copies the pages it touches).
            from modelbuild.workers import handover  # noqa: F401

            # Every fork shares the server's objects: frozen, the forks' collections never walk
            # (and so never copy) them. Python's advice for fork without exec.
            gc.collect()
            gc.freeze()
            self.state = "ready"
            self.last_used = time.monotonic()  # the idle clock starts when it can serve (a build may be waiting already)
            self.threads = _torch_threads()
            self._write_status()
            self._wake_on_child_exit()
            self._loop()
        finally:
            self._shut()

    def _listen(self) -> None:
        path = self.place.socket
        path.unlink(missing_ok=True)  # the client holds the start lock and found no live server
        old = os.umask(0o177)
        try:
            self.listener.bind(str(path))
        finally:
            os.umask(old)
        self.listener.listen(64)
        self.inode = path.stat().st_ino

    def _loop(self) -> None:
        while not self.stopping:
            self._reap()
            self._kill_doomed()
            if not self.running:  # made while a fork runs, it would take that fork's CPU and memory bandwidth
                self._make_spare()
            if not self.running and time.monotonic() - self.last_used > self.idle:
                self.log.info("idle for %.0fs: stopping", self.idle)
                return
            if not self._still_mine():
                self.log.info("the socket was removed or taken by another server: stopping")
                return
            watched: list[socket.socket | int] = [self.listener, self.child_exits[0], *(conn for conn in self.running.values() if conn is not None)]
            try:
                readable, _, _ = select.select(watched, [], [], 0.2 if self.doomed else 1.0)
            except InterruptedError:
                continue
            for ready in readable:
                if ready is self.listener:
                    self._accept()
                elif isinstance(ready, int):  # the child-exit pipe
                    try:
                        os.read(self.child_exits[0], 512)  # the loop's next turn reaps the fork (and makes a spare)
                    except BlockingIOError:
                        pass
                else:
                    self._build_went_away(ready)

    def _wake_on_child_exit(self) -> None:
        """A fork that ends wakes the loop at once (the signal's number is written to a pipe
        the loop watches), rather than at its next timeout: the spare for the next build is
        made, and has copied its pages ahead, while the user is still typing."""
        for fd in self.child_exits:
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.child_exits[1], warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler of Python's own: the C side writes the pipe

    def _on_term(self, signum: int, frame: Any) -> None:
        self.stopping = True
        if self.state == "warming":  # nothing served yet: no need to finish the imports first
            raise SystemExit(0)

    def _shut(self) -> None:
        self._drop_spare()
        for pid in list(self.running):
            _kill_group(pid)
        self._reap(block=True)
        if self._still_mine():
            self.place.socket.unlink(missing_ok=True)
            self.place.status.unlink(missing_ok=True)
        self.listener.close()

    def _still_mine(self) -> bool:
        try:
            return self.place.socket.stat().st_ino == self.inode
        except OSError:
            return False

    # -- requests ------------------------------------------------------------------------------

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        try:
            conn.settimeout(30)
            if not wire.same_user(conn):
                self.log.warning("refused a connection from another user")
                conn.close()
                return
            request = wire.receive(conn)
        except Exception as exc:  # noqa: BLE001 - garbage, a half-sent request: refused, the server goes on
            self.log.warning("a request could not be read: %s: %s", type(exc).__name__, exc)
            conn.close()
            return
        self.last_used = time.monotonic()
        kind = request.get("kind") if isinstance(request, dict) and isinstance(request.get("identity"), dict) else None
        if kind == "run":
            self._run(conn, request)
        elif kind == "build":
            self._build(conn, request)
        else:
            conn.close()

    def _unfit(self, conn: socket.socket, request: dict[str, Any], answer: str) -> bool:
        """The build's limits are ones no fork of this server could take (a finite memory
        limit): answer so, and the build runs the work in a fresh process. A limit that needs
        a privilege is found by the fork itself (workers/limits.py)."""
        why = limits.refusal(request.get("limits"))
        if why is None:
            return False
        self.log.info("not forking for a build: %s", why)
        try:
            wire.send(conn, (answer, why))
        except OSError:
            pass
        conn.close()
        return True

    def _stale(self, conn: socket.socket, request: dict[str, Any]) -> bool:
        changed = differences(self.identity, request["identity"])
        if not changed:
            return False
        # A build with other code or tools: this server is stale. It says why, stops taking
        # work, and lets the build start a fresh one in its place.
        self.log.info("stale for a build (%s): stopping", "; ".join(changed))
        try:
            wire.send(conn, ("stale", changed))
        except OSError:
            pass
        conn.close()
        self.place.socket.unlink(missing_ok=True)
        self.stopping = True
        return True

    def _run(self, conn: socket.socket, request: dict[str, Any]) -> None:
        if self._stale(conn, request) or self._unfit(conn, request, "cold"):
            return
        pid = self._hand_to_fork("run", conn, request, [])
        conn.settimeout(None)
        self.running[pid] = conn
        self.served += 1
        self._write_status()

    def _build(self, conn: socket.socket, request: dict[str, Any]) -> None:
        """A whole build handed over by a thin client (modelbuild.workers.delegate), with its
        standard streams: a fork runs the command as the client would have, imports done."""
        try:
            _, streams, _, _ = socket.recv_fds(conn, 1, 3)
        except OSError as exc:
            self.log.warning("a build's streams could not be received: %s", exc)
            conn.close()
            return
        try:
            if len(streams) != 3 or self._stale(conn, request) or self._unfit(conn, request, "refused"):
                conn.close()
                return
            pid = self._hand_to_fork("build", conn, request, streams)
        finally:
            for fd in streams:
                os.close(fd)
        conn.settimeout(None)
        self.running[pid] = conn
        self.builds.add(pid)
        self.served_builds += 1
        self._write_status()

    # -- forks -----------------------------------------------------------------------------

    def _hand_to_fork(self, kind: str, conn: socket.socket, request: dict[str, Any], streams: list[int]) -> int:
        """The pid of the process that now runs the request: the spare fork, made before the
        request came, or (no spare, or a spare that died) a fork made now. The loop makes the
        next spare once this request's descriptors are closed (a spare that kept a build's
        streams open would keep its reader waiting for their end)."""
        pid = self._give_spare(kind, conn, request, streams)
        if pid is None:
            pid = os.fork()
            if pid == 0:
                self._child_of_server()
                _run_request(kind, conn, request, streams, self.threads, self.place.pages)  # never returns
        return pid

    def _make_spare(self) -> None:
        """Fork now, for the next request. Forking a server that holds torch, coremltools and
        ExecuTorch copies its page tables: 12 ms here, a tenth of a metadata-only rebuild when
        it happens while the build waits. The spare waits for its request on a socket pair; it
        ends when the server closes its end (the server stopped or died)."""
        if self.spare is not None or self.stopping:
            return
        if time.monotonic() - self.spare_died < SPARE_BACKOFF:  # spares that die young are not replaced in a tight loop
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes or memory: requests fork when they come
            self.log.warning("no spare fork: %s", exc)
            ours.close()
            theirs.close()
            return
        if pid == 0:
            ours.close()
            self._child_of_server()
            _wait_as_spare(theirs, self.threads, self.place.pages)  # never returns
        theirs.close()
        self.spare = (pid, ours)
        self._write_status()

    def _give_spare(self, kind: str, conn: socket.socket, request: dict[str, Any], streams: list[int]) -> int | None:
        """Hand the request to the spare: its connection and streams as descriptors, then the
        request itself. None when there is no spare or it cannot take it."""
        if self.spare is None:
            return None
        pid, channel = self.spare
        self.spare = None
        try:
            channel.settimeout(5.0)  # a spare that does not read (stopped, swapping) must not stop the server
            socket.send_fds(channel, [b"J"], [conn.fileno(), *streams])
            wire.send(channel, (kind, request))
            return pid
        except OSError as exc:  # the spare died (killed, out of memory) or does not read: a fork made now takes it
            self.log.info("the spare fork %d could not take a request: %s", pid, exc)
            _kill_group(pid)  # it has no group of its own yet: the spare alone
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            return None
        finally:
            channel.close()

    def _child_of_server(self) -> None:
        """In a new fork: let go of what is the server's (its listening socket, the builds'
        connections, the spare's channel), so only the server answers them."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the work's own handler is in place
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the fork's own children are its business
        signal.set_wakeup_fd(-1)
        for fd in self.child_exits:
            os.close(fd)
        self.listener.close()
        for other in self.running.values():
            if other is not None:
                other.close()
        if self.spare is not None:
            self.spare[1].close()

    def _build_went_away(self, conn: socket.socket) -> None:
        """A running stage's build closed its end. Usually it has just read the answer and the
        fork is exiting; a fork still there a second later is not wanted: killed, with its group.
        A handed-over build whose client went away (Ctrl-C) is interrupted first, so it stops
        its stages and says so, and killed if it is still there five seconds later."""
        for pid, watched in list(self.running.items()):
            if watched is conn:
                conn.close()
                self.running[pid] = None
                if pid in self.builds:
                    _signal_group(pid, signal.SIGINT)
                self.doomed[pid] = time.monotonic() + (5.0 if pid in self.builds else 1.0)
        self._write_status()  # a build that has its answer is not waiting on this server any more

    def _kill_doomed(self) -> None:
        for pid, deadline in list(self.doomed.items()):
            if pid not in self.running:
                del self.doomed[pid]
            elif time.monotonic() >= deadline:
                self.log.info("build went away: stopping stage process %d", pid)
                _kill_group(pid)
                del self.doomed[pid]

    def _drop_spare(self) -> None:
        """End the spare fork (closing its channel ends it) and wait for it."""
        if self.spare is None:
            return
        pid, channel = self.spare
        self.spare = None
        channel.close()
        try:
            if not _waited(pid, 2.0):  # one that does not end (stopped, stuck in a read) is not waited for forever
                _kill_group(pid)
                os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def _reap(self, block: bool = False) -> None:
        if self.spare is not None:
            try:
                gone = os.waitpid(self.spare[0], os.WNOHANG)[0]
            except ChildProcessError:
                gone = self.spare[0]
            if gone:  # killed from outside, or it failed: the next request forks, and a new spare follows
                self.spare[1].close()
                self.spare = None
                self.spare_died = time.monotonic()
        for pid in list(self.running):
            try:
                done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.builds.discard(pid)
                conn = self.running.pop(pid)
                if conn is not None:
                    conn.close()
                self.last_used = time.monotonic()
        if not block:
            self._write_status()

    def _write_status(self) -> None:
        status = {
            "pid": os.getpid(),
            "state": self.state,
            "started": self.started,
            "idle_timeout": self.idle,
            "served": self.served,
            "builds": self.served_builds,
            # Forks whose build still listens: one that answered and is exiting is not work.
            "running": sum(1 for conn in self.running.values() if conn is not None),
            "last_used": time.time() - (time.monotonic() - self.last_used),
            "identity": self.identity,
            "warm_up": self.warm_seconds,
            "memory": _resident_bytes(),
            "spare": self.spare[0] if self.spare is not None else None,
        }
        text = json.dumps(status, indent=1, sort_keys=True)
        if text != getattr(self, "_last_status", None) and self._still_mine():  # a newer server's file is not ours to write
            temporary = self.place.status.with_name(self.place.status.name + f".{os.getpid()}.tmp")
            try:
                temporary.write_text(text, encoding="utf-8")
                os.replace(temporary, self.place.status)
            except OSError as exc:  # a full disk: `workers status` shows an older state; serving goes on
                self.log.warning("status not written: %s", exc)
                temporary.unlink(missing_ok=True)
                return
            self._last_status = text


def _waited(pid: int, seconds: float) -> bool:
    """Whether child ``pid`` ended within ``seconds`` (reaped if so)."""
    deadline = time.monotonic() + seconds
    while True:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _wait_as_spare(channel: socket.socket, threads: int | None, pages_file: Path) -> None:
    """The spare fork: copy ahead the pages the last handed-over build wrote (until the request
    comes), wait for a request from the server, then run it as a fork made for it would. Ends
    when the server closes the channel without one."""
    code = 0
    try:
        try:
            pages.copy_ahead(pages.kept(pages_file, os.getppid()), channel)
        except Exception:  # noqa: BLE001 - pages copied ahead save time only; the request still comes
            pass
        _, fds, _, _ = socket.recv_fds(channel, 1, 4)
        if not fds:
            return  # the server stopped
        kind, request = wire.receive(channel)
        channel.close()
        conn = socket.socket(fileno=fds[0])
        _run_request(kind, conn, request, fds[1:], threads, pages_file)  # never returns
    except BaseException:  # noqa: BLE001 - a spare that cannot take its request: the build hears "gone"
        code = 1
    finally:
        os._exit(code)


def _run_request(kind: str, conn: socket.socket, request: dict[str, Any], streams: list[int], threads: int | None, pages_file: Path) -> None:
    """In a fork: run a stage, or a whole handed-over build, and end."""
    try:
        if kind == "build":
            from modelbuild.workers.handover import run_handed_over

            run_handed_over(conn, request, streams, pages_file)
        else:
            _run_in_fork(conn, request, threads)
    finally:
        os._exit(1)


def _run_in_fork(conn: socket.socket, request: dict[str, Any], threads: int | None) -> None:
    """Run one stage in this fork, as a cold worker would, answer, and end (no cleanup of the
    server's state: the process ends with the stage)."""
    code = 0
    try:
        os.setpgid(0, 0)  # the server kills the whole group if the build goes away
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            caller.become(request)
        except LimitsRefused as exc:
            wire.send(conn, ("cold", str(exc)))  # the build runs the stage in a fresh process
            return
        torch = sys.modules.get("torch")
        if torch is not None and threads is not None:
            torch.set_num_threads(threads)
        from modelbuild.graph.worker import run_stage

        outcome = run_stage(*request["job"])
        wire.send(conn, ("done", outcome))
    except BaseException:  # noqa: BLE001 - reported to the build as the stage's failure
        code = 1
        try:
            wire.send(conn, ("crashed", traceback.format_exc()))
        except Exception:  # noqa: BLE001 - the build is gone: nothing to tell
            pass
    finally:
        os._exit(code)


def _kill_group(pid: int) -> None:
    _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, signum: int) -> None:
    """Signal a fork's process group; the fork alone when it has none yet (a spare that has not
    begun its request: stopped, or slow to be scheduled). The pid is still the server's
    unreaped child, so it cannot belong to another process."""
    try:
        os.killpg(pid, signum)
        return
    except ProcessLookupError:
        pass
    except PermissionError:
        return
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _resident_bytes() -> int:
    """The server's resident memory (its forks share these pages until they write to them)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelbuild-worker-server")
    parser.add_argument("--folder", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--idle", type=float, required=True)
    parser.add_argument("--here", default=None, help="the working folder of the build that started it")
    args = parser.parse_args(argv)
    place = Place(Path(args.folder), args.name)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s", stream=sys.stderr)
    log = logging.getLogger("modelbuild.workers")
    log.info("server starting for %s (idle timeout %.0fs)", place.name, args.idle)
    Server(place, args.idle, log, args.here).serve()
    log.info("server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
