"""A fork of the warm server takes the limits of the build it works for.

A fork inherits the server's resource limits and nice level, and the server has those of the
build that happened to start it. Without this, `nice -n 19 modelbuild build` or `ulimit -n
256; modelbuild build` would be ignored by every stage a warm worker ran, and a build started
under a low limit would pass it on to later builds that never asked for it. The build sends
its own (``current()``); the fork takes them (``adopt()``) before it runs anything, or says why
it cannot, and the build then runs that work in a fresh process, where the limits mean what
the user expects:

* a limit above the server's hard limit, or a nice level below the server's, needs a
  privilege the server may not have;
* a finite address-space or data limit would be counted against the libraries the server
  has already loaded, which a fresh process would not have.
"""

from __future__ import annotations

import os
import resource
from typing import Any

# Measured against the process's whole mapping, which a warm fork inherits loaded.
MEMORY_LIMITS = ("RLIMIT_AS", "RLIMIT_DATA")


# A server started under tighter limits or a higher nice level (`nice -n 19 modelbuild build`)
# cannot loosen them for later builds without a privilege; a server started by one of those
# builds can.
RESTART = " (the server has those of the build that started it: `modelbuild workers stop`, and the next build starts one with yours)"


class LimitsRefused(Exception):
    """The fork cannot take the build's limits: the work runs in a fresh process instead."""


def current() -> dict[str, Any]:
    """This process's nice level and resource limits (soft, hard), by ``resource`` name."""
    return {"nice": os.getpriority(os.PRIO_PROCESS, 0), "rlimits": {name: list(resource.getrlimit(which)) for name, which in _kinds().items()}}


def _kinds() -> dict[str, int]:
    """Each limit once, by its first name: RLIMIT_OFILE is another name of RLIMIT_NOFILE, and
    setting both from one request would let the second undo the first."""
    kinds: dict[str, int] = {}
    for name in sorted(dir(resource)):
        if name.startswith("RLIMIT_") and getattr(resource, name) not in kinds.values():
            kinds[name] = getattr(resource, name)
    return kinds


def refusal(wanted: dict[str, Any] | None) -> str | None:
    """Why a fork could never take these limits, known before forking (the server then
    answers without a fork); None when it may (a limit that needs a privilege shows only when
    the fork tries)."""
    for name in MEMORY_LIMITS:
        soft, hard = (wanted or {}).get("rlimits", {}).get(name, [resource.RLIM_INFINITY] * 2)
        which = getattr(resource, name, None)
        if which is not None and soft != resource.RLIM_INFINITY and [soft, hard] != list(resource.getrlimit(which)):
            return f"the build's {name} limit ({soft} bytes) would count the warm server's loaded libraries"
    return None


def adopt(wanted: dict[str, Any] | None) -> None:
    """Take the build's nice level and limits in this process (a fork of the server), or raise
    LimitsRefused saying which one cannot be taken. Limits this platform lacks are left alone."""
    if not wanted:
        return
    why = refusal(wanted)
    if why:
        raise LimitsRefused(why)
    kinds = _kinds()
    for name, (soft, hard) in sorted(wanted.get("rlimits", {}).items()):
        which = kinds.get(name)
        if which is None:  # another platform's limit, or another name of one taken already
            continue
        if [soft, hard] == list(resource.getrlimit(which)):
            continue
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError) as exc:
            raise LimitsRefused(f"the build's {name} limit ({soft}, {hard}) cannot be set in the warm server's process: {exc}{RESTART}") from exc
    nice = wanted.get("nice")
    if isinstance(nice, int) and nice != os.getpriority(os.PRIO_PROCESS, 0):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as exc:
            raise LimitsRefused(f"the build's nice level {nice} cannot be set in the warm server's process: {exc}{RESTART}") from exc
