"""The content-addressed object store: every stage output, file or folder, under its digest.

Writes go to ``tmp/`` and are renamed into place, so a crash leaves at worst an orphan in
``tmp/``, never a half-written object under a digest a later build would trust.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from modelbuild.store.hashing import hash_tree
from modelbuild.store.paths import disk_size, remove


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.tmp = root / "tmp"

    def path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def signature(self, digest: str) -> str:
        """Every file's path, size, mtime, inode and ctime: cheap to read, changes when bytes
        are rewritten (ctime even when size and mtime are put back), so a build can trust an
        entry without re-hashing it (as DVC and git do)."""
        root = self.path(digest)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        parts = []
        for path in files:
            st = path.stat()
            parts.append(f"{path.relative_to(root.parent)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}")
        return "|".join(parts)

    def intact(self, digest: str) -> bool:
        """Re-hash the entry: its content must still be the digest it is stored under."""
        return hash_tree(self.path(digest)) == digest

    def evict(self, digest: str) -> int:
        """Remove an entry; return the bytes freed. An entry reached through a linked folder
        is not the cache's: the link goes, what it leads to stays."""
        path = self.path(digest)
        linked = self._linked_folder(path)
        if linked is not None:
            linked.unlink()
            return 0
        size = disk_size(path)
        remove(path)
        return size

    def digests(self) -> list[str]:
        """The entries stored here; none under a folder that is a symbolic link (someone else's
        files, which gc and verify must never delete)."""
        if not self.objects.is_dir() or self.objects.is_symlink():
            return []
        shards = [shard for shard in self.objects.iterdir() if shard.is_dir() and not shard.is_symlink()]
        return sorted(p.name for shard in shards for p in shard.iterdir() if len(p.name) == 64)

    def _linked_folder(self, path: Path) -> Path | None:
        """The first folder between the cache root and ``path`` that is a symbolic link, if any."""
        for folder in reversed(path.relative_to(self.root).parents[:-1]):
            if (self.root / folder).is_symlink():
                return self.root / folder
        return None

    def size(self, digest: str) -> int:
        return disk_size(self.path(digest))

    def clean_scratch(self) -> int:
        """Remove what interrupted stages left in tmp/ (never trusted, only untidy)."""
        freed = 0
        if self.tmp.is_symlink():  # never modelbuild's: the link goes, what it leads to stays
            self.tmp.unlink()
        elif self.tmp.is_dir():
            for leftover in self.tmp.iterdir():
                freed += disk_size(leftover)
                remove(leftover)
        return freed

    def scratch(self) -> Path:
        """A fresh empty folder for a stage to write into."""
        folder = self.tmp / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder

    def put(self, produced: Path) -> str:
        """Move ``produced`` (file or folder) into the store; return its digest."""
        digest = hash_tree(produced)
        self.adopt(produced, digest)
        return digest

    def adopt(self, produced: Path, digest: str) -> None:
        """Move ``produced`` into the store under ``digest``, which the caller has just
        computed from these very bytes (a fetched object, re-hashed before it is adopted)."""
        target = self.path(digest)
        if target.exists():
            remove(produced)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(produced, target)
        except OSError:
            # Another process stored the same bytes first: same content, keep theirs.
            if not target.exists():
                raise
            remove(produced)
