"""What a fork of the warm server must take from the build it works for, so that it behaves as
a process the build started would: the folder, environment, import path, umask, resource
limits and nice level. One description for both kinds of fork (a stage, a whole handed-over
build), so the two never drift apart.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from modelbuild.workers import limits


def context() -> dict[str, Any]:
    """This process's side of a request to the server."""
    return {
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "sys_path": list(sys.path),
        "umask": current_umask(),  # the files get the build's modes, not the server's
        "limits": limits.current(),  # nice, ulimit: the build's, not those of whoever started the server
    }


def become(request: dict[str, Any]) -> None:
    """In a fork of the server: take the build's context from its request. Raises
    limits.LimitsRefused (before anything else changes) when its limits cannot be taken."""
    limits.adopt(request.get("limits"))
    os.chdir(request["cwd"])
    os.umask(int(request.get("umask", 0o022)))
    os.environ.clear()
    os.environ.update(request["environ"])
    sys.path[:] = request["sys_path"]


def current_umask() -> int:
    """This process's umask, read without changing it (setting and restoring it would give a
    file another thread creates meanwhile the wrong modes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc (warm workers need Linux anyway)
    os.umask(mask)
    return mask
