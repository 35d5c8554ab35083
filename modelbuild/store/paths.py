"""The two file-tree helpers the store, the executor and the stages share."""

from __future__ import annotations

import shutil
from pathlib import Path


def disk_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (an .mlpackage); 0 when it is gone."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def remove(path: Path) -> None:
    """Remove a file or a folder, whichever it is, if it is there."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
