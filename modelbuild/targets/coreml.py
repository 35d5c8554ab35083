"""Core ML: convert with coremltools, then stamp metadata and write the package deterministically."""

from __future__ import annotations

from typing import Any

from modelbuild.manifest.spec import ModelSpec
from modelbuild.targets import TARGETS
from modelbuild.targets.base import Target


@TARGETS.register
class CoreMLTarget(Target):
    name = "coreml"
    stages = ("coreml.convert", "coreml.optimize", "coreml.package")
    runtime = "coreml"
    verified = ("coreml.optimize", "model.mlpackage")

    @classmethod
    def capture_params(cls, model: ModelSpec) -> dict[str, Any]:
        """The capture-phase compatibility switches, in the key only where they can act (script
        mode), so that switching one off for a traced model rebuilds nothing."""
        if model.data["capture"]["mode"] != "script":
            return {}
        from modelbuild.coreml.compat import phase_switches

        return {"compat": phase_switches(model.data["targets"]["coreml"]["compat"], "capture")}

    @classmethod
    def before_script(cls, capture_params: dict[str, Any], module: Any) -> list[str]:
        from modelbuild.coreml.compat import COMPAT, enabled

        notes: list[str] = []
        for name in enabled(capture_params.get("compat", {}), "capture"):
            notes += COMPAT.get(name).before_script(module)
        return notes
