"""A target is a chain of stages after ``capture`` that ends in one shipped artifact, and the
runtime that runs that artifact. Its ``<name>.verify`` and ``<name>.bench`` stages come from
the runtime: a new target never writes its own."""

from __future__ import annotations

from typing import ClassVar


class Target:
    name: ClassVar[str]
    stages: ClassVar[tuple[str, ...]]  # in order; the last one writes the artifact
    runtime: ClassVar[str]  # a name in modelbuild.runtimes.RUNTIMES

    # (stage, file) that verification and benchmarks run: by default the shipped artifact. A
    # target whose last stage only stamps metadata names the stage before it, so editing a
    # description never re-runs a verification (metadata does not compute).
    verified: ClassVar[tuple[str, str] | None] = None

    @classmethod
    def artifact_stage(cls) -> str:
        return cls.stages[-1]

    @classmethod
    def verified_artifact(cls) -> tuple[str, str]:
        if cls.verified is not None:
            return cls.verified
        from modelbuild.stages import STAGES

        return cls.artifact_stage(), STAGES.get(cls.artifact_stage()).artifacts[0]
