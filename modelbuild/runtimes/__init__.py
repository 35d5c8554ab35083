"""The runtime registry: what runs an artifact for verification and benchmarks.

A new runtime is one module here with one registered class, plus one line in BUILTIN.
"""

from __future__ import annotations

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

RUNTIMES.load(BUILTIN)

__all__ = ["RUNTIMES", "Runtime"]
