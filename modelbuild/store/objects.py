"""The content-addressed object store: every stage output, file or folder, under its digest.

Writes go to ``tmp/`` and are renamed into place, so a crash leaves at worst an orphan in
``tmp/``, never a half-written object under a digest a later build would trust.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from modelbuild.store.hashing import hash_tree


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.tmp = root / "tmp"

    def path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def scratch(self) -> Path:
        """A fresh empty folder for a stage to write into."""
        folder = self.tmp / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder

    def put(self, produced: Path) -> str:
        """Move ``produced`` (file or folder) into the store; return its digest."""
        digest = hash_tree(produced)
        target = self.path(digest)
        if target.exists():
            _remove(produced)
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(produced, target)
        except OSError:
            # Another process stored the same bytes first: same content, keep theirs.
            if not target.exists():
                raise
            _remove(produced)
        return digest


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
