"""What became of each stage of a build: one record per stage. ``report.document`` (report.json),
``report.bench``, ``report.sizes`` and the terminal are views of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from modelbuild.report.reasons import Reason, describe


class Status(str, Enum):
    """What became of a stage. A ``str``: report.json and the terminal read the value."""

    BUILT = "built"
    CACHED = "cached"
    REMOTE = "remote"  # fetched from the remote cache (and checked) instead of built here
    FAILED = "failed"
    SKIPPED = "skipped"  # cannot run on this machine (a reason says why); never cached
    BLOCKED = "blocked"  # a stage it reads failed
    WOULD_RUN = "would run"  # plan / --dry-run
    NOT_RUN = "not run"  # stopped after another failure
    RUNNING = "running"

    __str__ = str.__str__
    __format__ = str.__format__  # type: ignore[assignment]  # a plain string in f-strings, as in report.json


SETTLED = (Status.BUILT, Status.CACHED, Status.REMOTE)  # the stage has an output


@dataclass
class StageResult:
    model: str
    stage: str
    status: Status
    reasons: list[Reason] = field(default_factory=list)  # why it ran, was cached or skipped (cli.terminal words them)
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

    @property
    def reason(self) -> str:
        """The reasons in words (``reasons.describe``)."""
        return describe(self.reasons)


@dataclass
class BuildReport:
    results: list[StageResult] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # e.g. a corrupt cache entry evicted
    variant_of: dict[str, str] = field(default_factory=dict)  # variant model -> its base model
    remote: dict[str, Any] | None = None  # the remote cache's traffic (remote.session.Traffic), when one was used

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


def role_of(stage: str) -> str:
    """A stage's declared role (``Stage.role``); "build" for a name no registry knows."""
    from modelbuild.stages import STAGES

    return STAGES.get(stage).role if stage in STAGES else "build"
