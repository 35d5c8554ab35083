"""The stage registry. A new stage: one module here, one line in BUILTIN.

``<target>.verify`` and ``<target>.bench`` are not listed: they follow from the target and its
runtime, and ``stages/checks.py`` makes them the first time one is asked for.
"""

from __future__ import annotations

from modelbuild.registry import Registry
from modelbuild.stages.base import Stage, StageJob


def _derive(name: str) -> type[Stage] | None:
    from modelbuild.stages.checks import derive

    return derive(name)


STAGES: Registry[Stage] = Registry("stage", derive=_derive)

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
]

STAGES.load(BUILTIN)

__all__ = ["STAGES", "Stage", "StageJob"]
