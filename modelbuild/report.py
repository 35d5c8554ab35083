"""The build report: one record per stage; report.json and the summary table are two views."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from modelbuild import __version__


class Status(str, Enum):
    """What became of a stage. A ``str``: report.json and the terminal read the value."""

    BUILT = "built"
    CACHED = "cached"
    FAILED = "failed"
    SKIPPED = "skipped"  # cannot run on this machine (a reason says why); never cached
    BLOCKED = "blocked"  # a stage it reads failed
    WOULD_RUN = "would run"  # plan / --dry-run
    NOT_RUN = "not run"  # stopped after another failure
    RUNNING = "running"

    __str__ = str.__str__
    __format__ = str.__format__


SETTLED = (Status.BUILT, Status.CACHED)  # the stage has an output


@dataclass
class StageResult:
    model: str
    stage: str
    status: Status
    reason: str = ""
    seconds: float = 0.0
    output: str | None = None  # digest in the store
    key: str | None = None  # the stage key that output belongs to
    # The key as modelbuild.lock records it: upstream outputs that may differ between CPUs
    # (the reference) enter it by their own lock key, so it is the same on every machine.
    lock_key: str | None = None
    artifact: str | None = None  # path under build/
    size: int | None = None
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None  # user | stage
    log: str | None = None
    traceback: str | None = None


@dataclass
class BuildReport:
    results: list[StageResult] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # e.g. a corrupt cache entry evicted
    variant_of: dict[str, str] = field(default_factory=dict)  # variant model -> its base model

    def add(self, result: StageResult) -> None:
        self.results.append(result)

    def by_role(self, role: str) -> list[StageResult]:
        """The results of the stages with this role ("build", "verify", "measure")."""
        return [r for r in self.results if role_of(r.stage) == role]

    def by_status(self, status: str) -> list[StageResult]:
        return [r for r in self.results if r.status == status]

    @property
    def exit_code(self) -> int:
        failed = self.by_status(Status.FAILED)
        if any(r.error_kind == "user" for r in failed):
            return 2
        return 1 if failed else 0

    def to_json(self) -> dict[str, Any]:
        models: dict[str, Any] = {}
        for r in self.results:
            entry = {k: v for k, v in asdict(r).items() if k not in ("model", "stage", "traceback") and v not in (None, [], {})}
            entry["seconds"] = round(r.seconds, 3)
            models.setdefault(r.model, {"stages": {}})["stages"][r.stage] = entry
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        from modelbuild.bench_report import bench_rows
        from modelbuild.size_report import size_rows

        return {"modelbuild": __version__, "seconds": round(self.seconds, 3), "exit_code": self.exit_code, "counts": counts,
                "warnings": self.warnings, "models": models, "sizes": size_rows(self), "bench": bench_rows(self),
                "variant_of": self.variant_of}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)


def role_of(stage: str) -> str:
    """A stage's declared role (``Stage.role``); "build" for a name no registry knows."""
    from modelbuild.stages import STAGES

    return STAGES.get(stage).role if stage in STAGES else "build"
