"""Stat signatures: what a file's metadata says about whether its bytes may have changed.

Size, mtime, inode and ctime together: an in-place rewrite that keeps size and mtime (``touch
-d``, a tool that restores times) still moves ctime, which no user-level call can set back.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from modelbuild.errors import UserError


@dataclass(frozen=True)
class FileSignature:
    text: str  # compared for equality, stored in the state database
    newest_ns: int  # the latest mtime among the files: too recent means "not yet settled" (as git and ninja judge it)


def _one(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"


def stat_signature(path: Path) -> FileSignature:
    """The signature of a regular file, or of every regular file under a folder."""
    st = os.stat(path)
    if stat.S_ISREG(st.st_mode):
        return FileSignature(_one(st), st.st_mtime_ns)
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path}: expected a regular file or a folder, got {file_kind(st.st_mode)}")
    parts, newest = [], 0
    for full in walk_files(path):
        fst = os.stat(full)
        if not stat.S_ISREG(fst.st_mode):
            raise UserError(f"{full}: expected a regular file, got {file_kind(fst.st_mode)}")
        parts.append(f"{full.relative_to(path).as_posix()}={_one(fst)}")
        newest = max(newest, fst.st_mtime_ns)
    return FileSignature("|".join(parts), newest)


def walk_files(folder: Path) -> list[Path]:
    """Files under ``folder`` in a stable order, leaving out what the tree digest leaves out."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        found.extend(Path(root) / name for name in sorted(files) if name != ".DS_Store")
    return found


def file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"
