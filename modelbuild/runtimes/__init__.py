"""The runtime registry: what runs an artifact for verification and benchmarks.

A new runtime is one module here with one registered class, plus one line in BUILTIN.
"""

from __future__ import annotations

import importlib

from modelbuild.registry import Registry
from modelbuild.runtimes.base import Runtime

RUNTIMES: Registry[Runtime] = Registry("runtime")

BUILTIN = [
    "modelbuild.runtimes.torch_eager",
    "modelbuild.runtimes.torchscript",
    "modelbuild.runtimes.onnxruntime",
    "modelbuild.runtimes.executorch",
    "modelbuild.runtimes.coreml",
]

for _module in BUILTIN:
    importlib.import_module(_module)

__all__ = ["RUNTIMES", "Runtime"]
