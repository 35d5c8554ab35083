"""A target is a chain of stages after ``capture`` that ends in one shipped artifact, and the
runtime that runs that artifact. Its ``<name>.verify`` and ``<name>.bench`` stages come from
the runtime: a new target never writes its own."""

from __future__ import annotations

from typing import ClassVar


class Target:
    name: ClassVar[str]
    stages: ClassVar[tuple[str, ...]]  # in order; the last one writes the artifact
    runtime: ClassVar[str]  # a name in modelbuild.runtimes.RUNTIMES

    @classmethod
    def artifact_stage(cls) -> str:
        return cls.stages[-1]
