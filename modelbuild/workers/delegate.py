"""The build's side of a warm coordinator: hand the whole build to the project's warm server.

A metadata-only edit rebuilds two small stages, yet a build in a fresh interpreter spends most
of a second importing the manifest checker, the graph, ONNX and the console before it plans
anything. The Gradle daemon's answer: a thin client. When the project's server is ready and
has this build's identity (code, tools, interpreter, import path, environment), the build
sends it its arguments, folder, environment and its standard streams (the file descriptors
themselves, over the Unix socket), and the server forks: the fork runs the command exactly as
this process would have, with the imports already done, writing straight to this terminal,
and ends with it. This process waits for the exit code.

Whenever the server is missing, still warming up, stale or says no, the build runs here as
before (and starts or replaces the server itself when a stage needs it).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, Sequence

from modelbuild.workers import wire

# Set in the fork that runs a handed-over build, so it never hands itself over again.
DELEGATED = "MODELBUILD_DELEGATED"
STARTED_WAIT = 30.0  # seconds for the server to fork the build (it forks at once when it can)


def run_in_server(argv: Sequence[str], project: Any, cold: bool) -> int | None:
    """The exit code of this build run by the warm server; None: run it here."""
    if os.environ.get(DELEGATED) or not _streams_open():
        return None
    from modelbuild.workers import caller
    from modelbuild.workers.client import read_status
    from modelbuild.workers.config import resolve
    from modelbuild.workers.identity import differences, identity
    from modelbuild.workers.place import place_for

    try:
        settings = resolve(project.workers, cold)
        if not settings.warm:
            return None
        place = place_for(project.cache_dir)
    except Exception:  # noqa: BLE001 - the build run here reports a bad setting or folder in its own words
        return None
    status = read_status(place)
    if status is None or status.get("state") != "ready":
        return None  # no server, or one still importing: here is faster than waiting
    mine = identity()
    if differences(status.get("identity", {}), mine):
        return None  # the build run here replaces the stale server
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(str(place.socket))
    except OSError:
        return None
    with connection:
        request = {
            "kind": "build",
            "identity": mine,
            "argv": list(argv),
            **caller.context(),
        }
        try:
            connection.settimeout(STARTED_WAIT)  # a server that cannot fork (stopped, swapping): build here
            wire.send(connection, request)
            socket.send_fds(connection, [b"F"], [0, 1, 2])
            answer = wire.receive(connection)
            connection.settimeout(None)
        except (OSError, EOFError):
            return None  # refused or not started (a server stopping, or too slow): nothing ran
        if not (isinstance(answer, tuple) and answer and answer[0] == "started"):
            return None  # ("stale", why): run here, which replaces the server; ("refused", why): its limits
        sys.stdout.flush()
        try:
            outcome = wire.receive(connection)
        except KeyboardInterrupt:
            # The server sees this connection close and interrupts the build's fork, which says
            # "interrupted" itself; its stages are stopped as when a build dies.
            return 130
        except (OSError, EOFError):
            print("error: the warm server's build process died; see `modelbuild workers status` for its log, or build with --cold", file=sys.stderr)
            return 1
    if isinstance(outcome, tuple) and len(outcome) == 2 and outcome[0] == "exit" and isinstance(outcome[1], int):
        return outcome[1]
    print(f"error: the warm server answered {outcome!r:.80}; build with --cold", file=sys.stderr)
    return 1


def _streams_open() -> bool:
    """Standard input, output and error are open descriptors (a daemon may run with one closed)."""
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return False
    return True
