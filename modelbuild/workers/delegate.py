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
from pathlib import Path
from typing import Any, Sequence

from modelbuild.workers import wire

# Set in the fork that runs a handed-over build, so it never hands itself over again.
DELEGATED = "MODELBUILD_DELEGATED"
STARTED_WAIT = 30.0  # seconds for the server to fork the build (it forks at once when it can)
# Options that make a build run here: read from the words before the command line is parsed
# (argparse takes any unambiguous prefix, so "--col" is --cold); the fork checks them again
# with the real parser (``here_because``).
_RUN_HERE = ("--cold", "--dry-run", "--scheduler")


def hand_over(argv: Sequence[str] | None = None) -> int | None:
    """The exit code of this build as the project's warm server ran it; None: run it here.

    Called before the command line is even parsed (parsing means importing it, 20 ms): this
    path imports only the socket, pickle, TOML and JSON readers, and modelbuild's few modules
    that find the server."""
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or words[0] != "build" or _asks_to_run_here(words[1:]) or os.environ.get(DELEGATED) or not _streams_open():
        return None
    from modelbuild.workers import caller
    from modelbuild.workers.identity import differences, identity
    from modelbuild.workers.status import read_status

    try:
        place = _place()
    except Exception:  # noqa: BLE001 - the build run here reports a bad setting or folder in its own words
        return None
    if place is None:
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
            "argv": words,
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
            return None  # ("stale", why): run here, which replaces the server; ("refused", why): its limits, or an option
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


def here_because(args: Any) -> str | None:
    """Why a parsed command line runs in the client's own process, or None: a build the server
    may run. (Only builds are handed over; --cold, a Dask scheduler and --dry-run run here.)"""
    if getattr(args, "command", None) != "build":
        return f"the {getattr(args, 'command', None)} command"
    for option in ("cold", "scheduler", "dry_run"):
        if getattr(args, option, None):
            return f"--{option.replace('_', '-')}"
    return None


def _asks_to_run_here(words: list[str]) -> bool:
    for word in words:
        if word == "--":
            return False
        name = word.split("=", 1)[0]
        if len(name) > 2 and any(option.startswith(name) for option in _RUN_HERE):
            return True
    return False


def _place() -> Any:
    """The project's server place, from its settings file as it stands (None: this project
    builds cold). Not checked: the build the fork runs loads and checks the project itself."""
    from modelbuild.manifest.settings_file import DEFAULT_FOLDERS, find_settings
    from modelbuild.workers.config import resolve
    from modelbuild.workers.place import place_for

    root, _file, table = find_settings(Path.cwd().resolve(), _remembered_toml)
    folder = table.get("cache_dir", DEFAULT_FOLDERS["cache_dir"])
    workers = table.get("workers")
    if not isinstance(folder, str) or not (workers is None or isinstance(workers, dict)):
        return None
    if not resolve(workers, False).warm:
        return None
    return place_for((root / folder).resolve())


def _remembered_toml(path: Path) -> dict[str, Any]:
    """A settings file's table, parsed once per version of the file: kept as JSON in the
    private folder, by the file's path and stat signature (importing the TOML parser costs a
    handed-over build 4 ms). Anything unusual (a value JSON cannot hold, an unreadable
    folder) parses the file again."""
    import json

    from blake3 import blake3

    from modelbuild.manifest.settings_file import read_toml
    from modelbuild.workers.place import private_folder

    info = path.stat()
    signature = [str(path), info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns]
    kept = private_folder() / f"settings-{blake3(str(path).encode()).hexdigest()[:16]}.json"
    try:
        saved = json.loads(kept.read_text(encoding="utf-8"))
        if saved["signature"] == signature and isinstance(saved["table"], dict):
            return saved["table"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    table = read_toml(path)
    try:
        text = json.dumps({"signature": signature, "table": table})
    except (TypeError, ValueError):  # a date or time in the table: parsed each time
        return table
    temporary = kept.with_name(f"{kept.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, kept)
    except OSError:
        temporary.unlink(missing_ok=True)
    return table


def _streams_open() -> bool:
    """Standard input, output and error are open descriptors (a daemon may run with one closed)."""
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return False
    return True
