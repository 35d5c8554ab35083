"""One build at a time per cache: a second process waits, and says what it is waiting for."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO, Callable, Iterator

from modelbuild.errors import UserError
from modelbuild.store.paths import claim_cache_dir


@contextlib.contextmanager
def build_lock(cache_dir: Path, say: Callable[[str], None], create: bool = True) -> Iterator[None]:
    if not create:  # nothing to lock (``clean`` of a project that never built)
        yield
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the cache folder {cache_dir}: {exc.strerror}") from None
    claim_cache_dir(cache_dir)
    path = cache_dir / "lock"
    try:
        handle = open_lock(path)
    except OSError as exc:
        raise UserError(
            f"cannot write to the cache folder {cache_dir} ({exc.strerror}); `check` and `plan` work without writing, a build needs a writable cache"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            say(f"waiting for another modelbuild build ({holder}) to release {path} …")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_lock(path: Path, create: bool = True) -> IO[str]:
    """The lock file, opened for reading and writing without following a link: the build
    writes its pid into it, so a link planted there (to a file of the user's, or dangling to
    a place outside) must fail, and so must a file with other names (a hard link). ``create``:
    False for a reader that only waits on a build (the no-op check), which makes nothing."""
    if path.is_symlink():
        raise UserError(f"{path} is a symbolic link, which modelbuild never makes; remove it")
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | (os.O_CREAT if create else 0), 0o644)
    if os.fstat(fd).st_nlink > 1:
        os.close(fd)
        raise UserError(f"{path} has other names (a hard link), which modelbuild never makes; remove it")
    return os.fdopen(fd, "r+")
