"""Bookkeeping a build may finish after its client has its answer.

A build handed over to the warm server (modelbuild.workers.handover) answers its client as
soon as the summary is printed and the exit code known; what only a later build reads (the
no-op record) is written after that, by the same process, while the client has already
returned. Anywhere else the work runs at once, where it is asked for.
"""

from __future__ import annotations

from typing import Callable

_pending: list[Callable[[], None]] | None = None


def hold() -> None:
    """From now on, ``later`` keeps the work for ``finish`` (the fork that runs a handed-over build)."""
    global _pending
    _pending = []


def holding() -> bool:
    return _pending is not None


def later(work: Callable[[], None]) -> None:
    """Run ``work`` after the answer when held, else now."""
    if _pending is None:
        work()
    else:
        _pending.append(work)


def finish() -> None:
    """Run what was kept, in order (after the client has its answer)."""
    global _pending
    kept, _pending = _pending or [], None
    for work in kept:
        work()
