"""The target registry. A new target: one module here declaring its stages, one line in BUILTIN."""

from __future__ import annotations

from modelbuild.registry import Registry
from modelbuild.targets.base import Target

TARGETS: Registry[Target] = Registry("target")

BUILTIN = [
    "modelbuild.targets.coreml",
    "modelbuild.targets.executorch",
    "modelbuild.targets.onnx",
    "modelbuild.targets.torchscript",
]

TARGETS.load(BUILTIN)

__all__ = ["TARGETS", "Target"]
