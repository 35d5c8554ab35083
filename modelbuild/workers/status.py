"""A project's warm server as its status file describes it, read without starting anything.

Apart from the client (which starts and stops servers) because a build handed to the server
(modelbuild.workers.delegate) reads the status before anything else, and must not pay for
the imports starting a server needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelbuild.workers.place import Place


def read_status(place: Place) -> dict[str, Any] | None:
    """The server's status file when a live server wrote it, else None (a stale file is removed)."""
    try:
        status = json.loads(place.status.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(status, dict) or not is_server(status.get("pid"), place):
        place.status.unlink(missing_ok=True)
        return None
    return status


def is_server(pid: Any, place: Place) -> bool:
    """Whether ``pid`` is the live warm server of ``place`` (not a process that reused its
    number, nor another project's server that did)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    arguments = command.split(b"\0")
    return b"modelbuild.workers.server" in arguments and place.name.encode() in arguments and state != "Z"
