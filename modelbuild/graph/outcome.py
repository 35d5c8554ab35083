"""What a worker hands back for one stage. It crosses a process boundary, so it is a small
picklable record: an output digest when the stage succeeded, an error otherwise (a failed
verification keeps its notes and figures: the summary shows them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outcome:
    seconds: float
    output: str | None = None  # the digest of the output in the store; None when the stage failed
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None  # "user" (the manifest or the model's code: exit 2) or "stage"
    traceback: str | None = None

    @classmethod
    def failed(
        cls, kind: str, message: str, seconds: float, traceback: str | None = None, notes: list[str] | None = None, info: dict[str, Any] | None = None
    ) -> "Outcome":
        return cls(seconds, error=message, error_kind=kind, traceback=traceback, notes=notes or [], info=info or {})
