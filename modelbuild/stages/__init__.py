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
    "modelbuild.stages.coreml_package",
]

for _module in BUILTIN:
    importlib.import_module(_module)

__all__ = ["STAGES", "Stage", "StageJob"]
