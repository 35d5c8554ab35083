"""The stage registry. A new stage: one module here, one line in BUILTIN."""

from __future__ import annotations

import importlib

from modelbuild.registry import Registry
from modelbuild.stages.base import Stage, StageJob

STAGES: Registry[Stage] = Registry("stage")

BUILTIN = [
    "modelbuild.stages.source",
    "modelbuild.stages.capture",
    "modelbuild.stages.coreml_convert",
    "modelbuild.stages.coreml_optimize",
    "modelbuild.stages.coreml_package",
    "modelbuild.stages.reference",
    "modelbuild.stages.onnx_export",
    "modelbuild.stages.onnx_package",
    "modelbuild.stages.executorch_export",
    "modelbuild.stages.torchscript_export",
    "modelbuild.stages.checks",  # last: it adds <target>.verify and <target>.bench for every target
]

for _module in BUILTIN:
    importlib.import_module(_module)

__all__ = ["STAGES", "Stage", "StageJob"]
