"""The command line: ``commands`` parses and dispatches and owns the exit codes; ``terminal``
owns the rich console (progress, summary and tables)."""

from __future__ import annotations

from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The ``modelbuild`` program. A build goes to the project's warm server first, when one is
    ready (modelbuild.workers.delegate): before the command line is imported, which is most of
    what such a build would cost here."""
    from modelbuild.workers.delegate import hand_over

    code = hand_over(argv)
    if code is not None:
        if argv is None:  # this process is the program: nothing of it is left to tidy up
            import os
            import sys

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)  # an interpreter's own shutdown would add 10 ms to a 0.1 s build
        return code
    from modelbuild.cli.commands import main as run_here

    return run_here(argv)


__all__ = ["main"]
