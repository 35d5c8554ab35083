"""The ``source`` stage's snapshot tree, as the stages after it read it.

``source`` lays the model's code out under ``tree/`` in its output, by project-relative label,
and records in ``fingerprint.json`` the snapshot digest of every file and which label each
manifest field (weights, torchscript, exported_program) names; those large files are read
straight from their snapshot in the store. Every stage that rebuilds the eager model (capture, reference, the torch-side exports,
benchmarks) loads it from there: the bytes the source key hashed, whatever the user's folders
hold by then.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuild.usercode.tree import import_roots


@dataclass(frozen=True)
class SourceTree:
    root: Path  # the model's code, laid out by project-relative label
    layout: dict[str, str]  # "folder" (the manifest's folder), "weights", "torchscript", ... -> label
    blobs: dict[str, Path]  # "weights", "torchscript", ... -> the snapshot in the store (large files are never copied again)

    @classmethod
    def of(cls, source_output: Path) -> "SourceTree":
        fingerprint = json.loads((source_output / "fingerprint.json").read_text())
        layout = fingerprint["params"]["source"]["layout"]
        objects = source_output.parent.parent  # the store keeps every entry at objects/<d[:2]>/<d>
        digests = fingerprint["files"]
        blobs = {field: objects / digests[label][:2] / digests[label] for field, label in layout.items() if field != "folder"}
        return cls(source_output / "tree", layout, blobs)

    def path(self, field: str) -> Path:
        return self.blobs[field]

    def importable(self) -> None:
        """Put the snapshot's folders first on ``sys.path``; the worker takes them off (and
        forgets the modules imported from them) when the stage ends."""
        for root in reversed(import_roots(self.root, self.layout.get("folder", ""))):
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))


# The source fields that name a file the model is built from (snapshotted with its code).
SOURCE_FILES = ("weights", "torchscript", "exported_program", "onnx")


def layout_of(source: dict[str, Any], labels: dict[str, str], folder_label: str) -> dict[str, str]:
    """Which label each of the manifest's source fields names (for ``SourceTree.path``)."""
    layout = {"folder": folder_label}
    for key in SOURCE_FILES:
        if key in source:
            layout[key] = labels[key]
    return layout
