"""The target registry. A new target: one module here declaring its stages, one line in BUILTIN."""

from __future__ import annotations

import importlib

from modelbuild.registry import Registry
from modelbuild.targets.base import Target

TARGETS: Registry[Target] = Registry("target")

BUILTIN = [
    "modelbuild.targets.coreml",
    "modelbuild.targets.executorch",
    "modelbuild.targets.onnx",
    "modelbuild.targets.torchscript",
]

for _module in BUILTIN:
    importlib.import_module(_module)

__all__ = ["TARGETS", "Target"]
