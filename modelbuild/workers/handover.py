"""The warm server's side of a handed-over build (see modelbuild.workers.delegate): the fork
that becomes the build's process and runs the command line.

A process entry point like the server itself, so it sits above the command line in the
layers: nothing but the server imports it.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

from modelbuild.workers import caller, identity, pages, wire
from modelbuild.workers.delegate import DELEGATED, here_because
from modelbuild.workers.limits import LimitsRefused


def run_handed_over(conn: socket.socket, request: dict[str, Any], streams: list[int], pages_file: Path) -> None:
    """In the server's fork: become the build's process (its folder, environment, import path
    and standard streams), run the command, send the exit code, and end. After the answer, list
    the pages this build wrote in ``pages_file``, for the next spare to copy ahead."""
    import io
    import logging
    import signal

    code = 1
    try:
        os.setpgid(0, 0)  # the server interrupts (then kills) the whole group if the client goes away
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in enumerate(streams):
            os.dup2(fd, target)
            os.close(fd)
        try:
            caller.become(request)
        except LimitsRefused as exc:
            wire.send(conn, ("refused", str(exc)))  # the client builds itself: nothing ran here
            code = 0
            return
        os.environ[DELEGATED] = "1"
        identity.checked(request["identity"])  # the server compared it with its own
        sys.argv = ["modelbuild", *request["argv"]]
        # New stream objects on the build's descriptors: the server's were made for its log
        # file (block-buffered), a terminal wants lines as they come.
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace", line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True)
        root = logging.getLogger()
        for handler in list(root.handlers):  # the server's log handler, which now points at the build's stderr
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        from modelbuild.cli import afterwards
        from modelbuild.cli.commands import main

        why, parsed = _runs_in_client(request["argv"])
        if why is not None:
            wire.send(conn, ("refused", why))  # the client runs it: nothing ran here
            code = 0
            return
        try:
            wire.send(conn, ("started", os.getpid()))
        except OSError:  # the client gave up waiting (and builds itself): nothing ran here
            return

        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, relayed by the server
        afterwards.hold()  # what only a later build reads is written after the answer
        try:
            code = main(request["argv"], parsed)
        except SystemExit as exc:  # argparse: --help, a usage error
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # from here on, only os._exit ends this process
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            wire.send(conn, ("exit", int(code)))
        except OSError:  # the client went away (Ctrl-C): it has said "interrupted" already
            pass
        _after_the_answer(pages_file)
    except BaseException:  # noqa: BLE001 - the client reports a dead build process
        import traceback

        try:
            sys.stderr.write(traceback.format_exc())
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
    finally:
        os._exit(code if isinstance(code, int) and 0 <= code < 256 else 1)


def _runs_in_client(argv: list[str]) -> tuple[str | None, Any]:
    """(why the client must run this command line itself, or None when the fork runs it; the
    parsed command line). From the real parser: an option the client's quick look at its words
    missed comes back. A command line the parser rejects is run here (parsed: None): the fork
    prints the usage error on the client's stderr and sends its exit code."""
    import contextlib
    import io

    from modelbuild.cli.commands import parser

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = parser().parse_args(argv)
    except SystemExit:
        return None, None
    return here_because(args), args


def _after_the_answer(pages_file: Path) -> None:
    """The client has its exit code and is gone: let go of its streams (a reader of its
    output, ``| tail``, waits for every writer to close them), then write what was kept for
    later (modelbuild.cli.afterwards), and the pages this build wrote (modelbuild.workers.pages).
    A failure here costs the next build its fast path, or its pages copied ahead, only."""
    from modelbuild.cli import afterwards

    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    try:
        afterwards.finish()
    except Exception:  # noqa: BLE001 - nobody is left to tell; the next build takes the full path
        pass
    try:
        pages.keep(pages_file, os.getppid(), pages.written_runs())
    except (OSError, ValueError):  # no /proc (another system), an odd map line, a full disk: the next spare copies nothing ahead
        pass
