"""One build at a time per cache: a second process waits, and says what it is waiting for."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Callable, Iterator

from modelbuild.errors import UserError


@contextlib.contextmanager
def build_lock(cache_dir: Path, say: Callable[[str], None], create: bool = True) -> Iterator[None]:
    if not create:  # nothing to lock (``clean`` of a project that never built)
        yield
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the cache folder {cache_dir}: {exc.strerror}") from None
    path = cache_dir / "lock"
    try:
        handle = open(path, "a+")
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
