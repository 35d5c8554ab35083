"""Declared inputs (weights, the model's code, data) copied into the store as they are hashed.

The key names a digest; the stage must compute from exactly those bytes. Hashing the user's
file and loading it later would let a training job that writes a new checkpoint in between
give the old key the new model. So the bytes are copied once into ``cache/tmp/``, the copy is
hashed and renamed to its digest, and every stage loads that copy. A file that changes while
it is copied (its stat signature differs before and after) is read again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from modelbuild.errors import UserError
from modelbuild.store.hashing import hash_tree
from modelbuild.store.objects import ObjectStore
from modelbuild.store.paths import remove
from modelbuild.store.signature import stat_signature, walk_files
from modelbuild.store.state import StateDB

TRIES = 5


class Snapshots:
    """``take(path)`` gives the digest of ``path`` and guarantees the store holds those bytes.

    ``copy=False`` (``plan``, a dry run) only hashes: planning never writes the store.
    """

    def __init__(self, store: ObjectStore, db: StateDB, copy: bool = True) -> None:
        self.store = store
        self.db = db
        self.copy = copy

    def take(self, path: Path) -> str:
        for _ in range(TRIES):
            before = stat_signature(path)
            known = self.db.known_digest(path, before)
            if known is not None and (not self.copy or self._intact(known)):
                return known
            if not self.copy:
                digest = hash_tree(path)
                self.db.count_hashed(path)
                if stat_signature(path) == before:
                    self.db.remember_file(path, before, digest)
                    return digest
                continue
            scratch = self.store.scratch() / "snapshot"
            _copy(path, scratch)
            if stat_signature(path) != before:
                remove(scratch.parent)  # written to while we read it: read it again
                continue
            self.db.count_hashed(path)
            digest = self.store.put(scratch)
            remove(scratch.parent)
            self.db.remember_object(digest, self.store.signature(digest))
            self.db.remember_file(path, before, digest)
            return digest
        raise UserError(
            f"{path}: the file kept changing while modelbuild read it ({TRIES} tries); build again when whatever writes it (a training job?) has finished"
        )

    def _intact(self, digest: str) -> bool:
        """A snapshot is used only while it is the bytes of its digest: its stat signature is
        the one recorded, or re-hashing proves it (a tampered one is evicted and copied anew)."""
        if not self.store.has(digest):
            return False
        if self.store.signature(digest) == self.db.object_signature(digest):
            return True
        from modelbuild.store.admin import confirm_or_evict

        return confirm_or_evict(self.store, self.db, digest) is None


def _copy(source: Path, dest: Path) -> None:
    if source.is_dir():
        dest.mkdir()
        for full in walk_files(source):
            target = dest / full.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(full, target)
    else:
        shutil.copyfile(source, dest)
