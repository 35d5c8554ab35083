"""What a worker hands back for one stage. It crosses a process boundary, so it is a small
picklable record: an output digest when the stage succeeded, an error otherwise (a failed
verification keeps its notes and figures: the summary shows them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Terminal escape sequences (colours, cursor moves): libraries colour their error messages, and
# a note or error carries them into the summary, report.json and bench.md as "[96m...[0m".
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def plain(text: str) -> str:
    """``text`` without terminal escape sequences."""
    return _ESCAPES.sub("", text)


@dataclass(frozen=True)
class Outcome:
    seconds: float
    output: str | None = None  # the digest of the output in the store; None when the stage failed
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None  # "user" (the manifest or the model's code: exit 2) or "stage"
    traceback: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "notes", [plain(n) for n in self.notes])
        if self.error is not None:
            object.__setattr__(self, "error", plain(self.error))

    @classmethod
    def failed(
        cls, kind: str, message: str, seconds: float, traceback: str | None = None, notes: list[str] | None = None, info: dict[str, Any] | None = None
    ) -> "Outcome":
        return cls(seconds, error=message, error_kind=kind, traceback=traceback, notes=notes or [], info=info or {})
