"""The stage interface. A stage declares what it reads (its key) and knows how to run.

A new stage is one module with one class registered in ``modelbuild.stages`` (one line);
the planner and executor never change for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from modelbuild.errors import Location
from modelbuild.graph.node import StageNode
from modelbuild.manifest.spec import ModelSpec


@lru_cache(maxsize=64)
def tool_version(distribution: str) -> str:
    from modelbuild.versions import installed_version

    return installed_version(distribution)


PREVIOUS = "previous"  # the job input naming the stage's own previous output (reuses_previous)


@dataclass
class StageJob:
    """Everything a running stage may touch: its node, its inputs, its output folder, its log."""

    node: StageNode
    inputs: dict[str, Path]  # upstream stage name -> that stage's output (file or folder)
    out: Path  # an empty folder the stage fills; it becomes the stage's output
    log: Any  # a logging.Logger writing to build/<model>/logs/<stage>.log
    notes: list[str] = field(default_factory=list)  # short remarks for the summary (warnings)
    info: dict[str, Any] = field(default_factory=dict)  # figures for report.json
    # label -> the store's snapshot of each declared file: the bytes the key hashed. Stages
    # read these, never the user's paths (which may have changed since).
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def imports_dir(self) -> Path:
        """A folder beside the output for import trees built from snapshots (plugins); the
        worker removes it when the stage ends."""
        return self.out.with_name(self.out.name + "-imports")

    def where(self, field_path: str) -> Location:
        """The manifest location of a field, for UserErrors raised while running."""
        ctx = self.node.context
        line = ctx.get("lines", {}).get(field_path)
        prefix = ctx.get("prefix", "")
        full = f"{prefix}.{field_path}" if prefix else field_path
        return Location(ctx.get("manifest", "?"), line, full)


class Stage:
    name: ClassVar[str]
    version: ClassVar[int] = 1  # bump when the stage's code changes what it writes
    tools: ClassVar[tuple[str, ...]] = ()  # distributions whose versions are part of the key
    deps: ClassVar[tuple[str, ...]] = ()  # stages of the same model this one reads
    artifacts: ClassVar[tuple[str, ...]] = ()  # ("{model}.mlpackage",): copied to build/<model>/; the first is the main one
    heavy: ClassVar[bool] = True  # imports torch/coremltools: worth a worker process
    # Modules a warm worker server imports (and so every fork of it has) before any stage runs.
    warm_imports: ClassVar[tuple[str, ...]] = ()
    exclusive: ClassVar[bool] = False  # runs alone (benchmarks: another stage on the other core skews timings)
    # How ``modelbuild.lock`` checks this stage's output on another machine: "bytes" (the
    # output digest must match), "tolerance" (float results whose last bits depend on the CPU's
    # kernels: figures compared within a tolerance), "verdict" (a verification: same verdict),
    # or "none" (measurements, left out of the lock).
    lock: ClassVar[str] = "bytes"
    # What the stage is for: "build" (makes something), "verify" (checks an artifact against
    # the PyTorch model) or "measure" (timings). Reports group and filter by it.
    role: ClassVar[str] = "build"
    # Whether the stage may read its own previous output (``job.inputs[PREVIOUS]``, when the
    # cache still holds it) to build faster. What it writes must not depend on it: a stage that
    # uses it proves, per run, that the result equals what it would build without.
    reuses_previous: ClassVar[bool] = False

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        """The installed version of each of ``tools``: part of the stage's key."""
        return {name: tool_version(name) for name in cls.tools}

    @classmethod
    def skip_reason(cls, node: StageNode) -> str | None:
        """Why this stage cannot run on this machine (e.g. Core ML prediction off macOS), or None.

        Asked while walking the graph on every build, before any key is computed: keep it
        cheap. A skipped stage is reported with the reason and never cached.
        """
        return None

    @classmethod
    def runs_in_worker(cls, node: StageNode) -> bool:
        """Whether this node needs a worker process (it imports torch or coremltools). A stage
        that sometimes has nothing heavy to do (``coreml.optimize`` without steps) says so."""
        return cls.heavy

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        """The resolved manifest values this stage reads, keyed by field path."""
        return {}

    @classmethod
    def files(cls, model: ModelSpec) -> dict[str, str]:
        """Files (or folders) whose content this stage reads, by display label -> absolute path."""
        return {}

    @classmethod
    def context_fields(cls) -> tuple[str, ...]:
        """Manifest field paths whose line numbers the stage may cite in errors."""
        return ()

    def run(self, job: StageJob) -> None:
        raise NotImplementedError
