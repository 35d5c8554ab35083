"""A target is a chain of stages after ``capture`` that ends in one shipped artifact, and the
runtime that runs that artifact. Its ``<name>.verify`` and ``<name>.bench`` stages come from
the runtime: a new target never writes its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from modelbuild.manifest.spec import ModelSpec


class Target:
    name: ClassVar[str]
    stages: ClassVar[tuple[str, ...]]  # in order; the last one writes the artifact
    runtime: ClassVar[str]  # a name in modelbuild.runtimes.RUNTIMES

    # (stage, file) that verification and benchmarks run: by default the shipped artifact. A
    # target whose last stage only stamps metadata names the stage before it, so editing a
    # description never re-runs a verification (metadata does not compute).
    verified: ClassVar[tuple[str, str] | None] = None

    @classmethod
    def capture_params(cls, model: "ModelSpec") -> dict[str, Any]:
        """What this target adds to the ``capture`` key: options that change the captured
        module for this target's sake (Core ML's capture-phase compatibility conversions)."""
        return {}

    @classmethod
    def before_script(cls, capture_params: dict[str, Any], module: Any) -> list[str]:
        """Change the module just before ``torch.jit.script``, as ``capture_params`` says;
        return notes for the summary. The capture stage calls this for every target."""
        return []

    @classmethod
    def artifact_stage(cls) -> str:
        return cls.stages[-1]

    @classmethod
    def verified_artifact(cls) -> tuple[str, str]:
        if cls.verified is not None:
            return cls.verified
        from modelbuild.stages import STAGES

        return cls.artifact_stage(), STAGES.get(cls.artifact_stage()).artifacts[0]
