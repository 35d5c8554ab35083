"""Folder objects (an .mlpackage, a capture with its tree) travel as one tar file: one request
instead of one per file, and an object store has no folders to make atomic anyway.

The archive is deterministic (sorted names, no times, owners or modes), so two machines that
push the same folder upload the same bytes. Unpacking uses the ``data`` filter: no absolute
paths, no ``..``, no links that leave the folder, no devices; the digest check after it is
the second line of defence, not the only one.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path


def pack(folder: Path, archive: Path) -> None:
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
                if not info.isfile():  # the store holds regular files only; anything else is skipped
                    continue
                info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)


class UnsafeArchive(ValueError):
    """An archive whose member would land outside its folder, or is not a plain file."""


def unpack(archive: Path, folder: Path) -> None:
    folder.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r") as tar:
            for member in tar.getmembers():
                if not (member.isfile() or member.isdir()):
                    raise UnsafeArchive(f"member {member.name!r} is not a plain file")
                if member.name.startswith("/") or ".." in Path(member.name).parts:
                    raise UnsafeArchive(f"member {member.name!r} would land outside its folder")
            tar.extractall(folder, filter="data")
    except tarfile.TarError as exc:  # truncated, not a tar, a member the filter refuses
        raise UnsafeArchive(str(exc)) from None
