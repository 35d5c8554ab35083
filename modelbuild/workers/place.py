"""Where a project's warm server lives: a socket, a status file, a log, a start lock.

The files sit in a folder only this user can enter (``$MODELBUILD_WORKERS_DIR``, else
``$XDG_RUNTIME_DIR/modelbuild``, else ``<tmp>/modelbuild-<uid>``): whoever can connect to the
socket runs code as this user, so a folder someone else owns or can write is refused. One
server per cache folder, named by a digest of its path (socket paths are short on Linux).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import NamedTuple

from blake3 import blake3

from modelbuild.errors import UserError


class Place(NamedTuple):
    folder: Path
    name: str

    @property
    def socket(self) -> Path:
        return self.folder / f"{self.name}.sock"

    @property
    def status(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}.log"

    @property
    def lock(self) -> Path:
        return self.folder / f"{self.name}.lock"

    @property
    def pages(self) -> Path:
        """The pages the last handed-over build wrote (modelbuild.workers.pages)."""
        return self.folder / f"{self.name}.pages"


def place_for(cache_dir: Path) -> Place:
    """The server place of the project whose cache is ``cache_dir`` (the folder is made private)."""
    name = "w-" + blake3(str(cache_dir.resolve()).encode()).hexdigest()[:16]
    return Place(private_folder(), name)


def private_folder() -> Path:
    configured = os.environ.get("MODELBUILD_WORKERS_DIR")
    if configured:
        folder = Path(configured)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "modelbuild"
    else:
        folder = Path(tempfile.gettempdir()) / f"modelbuild-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise UserError(
            f"warm workers: {folder} must be a folder only you can use (owner {os.getuid()}, mode 700), "
            f"found owner {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}; fix it, set MODELBUILD_WORKERS_DIR, or build with --cold"
        )
    return folder
