"""The file-tree helpers the store, the executor, the stages and the release writer share."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

OUT_MARKER = ".modelbuild"  # in out_dir: this folder is modelbuild's to replace and to clean
CACHE_TAG = "CACHEDIR.TAG"  # in cache_dir: the cache directory tag (https://bford.info/cachedir/), which backup tools honour
CACHE_TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by modelbuild.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


def disk_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (an .mlpackage); 0 when it is gone or a
    symbolic link (what a link leads to is not freed by removing it)."""
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def remove(path: Path) -> None:
    """Remove a file or a folder, whichever it is, if it is there. A symbolic link is removed
    itself, never what it points to (rmtree refuses links, and a folder linked elsewhere is
    not modelbuild's to empty)."""
    if path.is_symlink():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def replace_file(path: Path, data: bytes | str) -> None:
    """Write ``path`` as a new file, renamed into place. Whatever sits at ``path`` (a symbolic
    link or a hard link someone planted, pointing at a file of theirs) is replaced, never
    written through; the temporary name is fresh (mkstemp: exclusive, no links followed)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; these are files a person reads and ships
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def open_new(path: Path) -> IO[str]:
    """A text file made anew at ``path`` for writing as things happen (a stage's log): what was
    there is unlinked first and the file is created exclusively, so a link planted at
    ``path`` is never written through."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    return os.fdopen(fd, "w", encoding="utf-8")


def inside(path: Path, folder: Path, what: str) -> Path:
    """``path`` if it stays inside ``folder`` (symlinks followed); a writer calls this before it
    writes or replaces anything, so no manifest value can make modelbuild touch a file
    elsewhere."""
    from modelbuild.errors import UserError

    resolved, base = path.resolve(), folder.resolve()
    if resolved != base and base not in resolved.parents:
        raise UserError(f"refusing to write {what} at {path}: it resolves to {resolved}, outside {base}")
    return path


def claim_out_dir(out_dir: Path) -> None:
    """Mark out_dir as modelbuild's before writing into it. A folder that already holds other
    files, written by someone else, is refused rather than taken over (``clean`` deletes
    out_dir as a whole)."""
    from modelbuild.errors import UserError

    marker = out_dir / OUT_MARKER
    if marker.is_symlink():
        raise UserError(f"out_dir {out_dir}: its {OUT_MARKER} marker is a symbolic link, which modelbuild never makes; remove it")
    if marker.is_file():
        return
    if out_dir.is_dir() and any(out_dir.iterdir()):
        # Only the marker says the folder is modelbuild's: a report.json alone could be anyone's.
        raise UserError(
            f"out_dir {out_dir} already holds files modelbuild did not write (it has no {OUT_MARKER} marker); "
            "choose another out_dir in the project settings, or empty it"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        replace_file(marker, "This folder is written by modelbuild; `modelbuild clean` removes it.\n")
    except OSError as exc:
        raise UserError(f"cannot write to out_dir {out_dir}: {exc.strerror}") from None


def claim_cache_dir(cache_dir: Path) -> None:
    """Tag cache_dir as modelbuild's before the first write into it. A folder that already holds
    files and no tag is someone else's (a build would overwrite its ``noop.json``, set its
    ``state.sqlite`` aside, and ``clean --cache`` would delete its ``objects/`` and ``tmp/``),
    and is refused; a cache made before the tag existed is recognised by its state database."""
    from modelbuild.errors import UserError

    tag = cache_dir / CACHE_TAG
    if tag.is_symlink():
        raise UserError(f"cache_dir {cache_dir}: its {CACHE_TAG} is a symbolic link, which modelbuild never makes; remove it")
    if tag.is_file():
        return
    if any(cache_dir.iterdir()) and not _state_database(cache_dir / "state.sqlite"):
        raise UserError(
            f"cache_dir {cache_dir} already holds files modelbuild did not write (it has no {CACHE_TAG}); "
            "choose another cache_dir in the project settings, or empty it"
        )
    try:
        replace_file(tag, CACHE_TAG_TEXT)
    except OSError as exc:
        raise UserError(f"cannot write to the cache folder {cache_dir}: {exc.strerror}") from None


def _state_database(path: Path) -> bool:
    """Whether ``path`` is a modelbuild state database (a cache from before the tag)."""
    import sqlite3

    if path.is_symlink() or not path.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return False
    return {"actions", "stages", "objects", "files"} <= tables
