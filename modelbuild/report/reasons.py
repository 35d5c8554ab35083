"""Why a stage ran, was cached, skipped or blocked: data, not sentences.

The executor and the key diff say *what* happened (a field changed from this to that, a file
was added, an upstream stage failed); the terminal alone turns that into words
(``cli.terminal.describe``), and report.json keeps it as data for tools. A stage's own
explanation (why it cannot run on this machine) is free text in ``text``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class Why(str, Enum):
    FIRST_BUILD = "first build"
    FILE = "file"  # subject: the file's label; change: added | removed | changed
    FIELD = "field"  # subject: a manifest field path; before, after
    INPUT = "input"  # subject: an upstream stage whose output changed
    TOOL = "tool"  # subject: a distribution; before, after (versions)
    IMPLEMENTATION = "implementation"  # subject: the stage; before, after (its version)
    MISSING = "missing"  # the cache entry for an unchanged key is gone
    FORCED = "forced"  # --force
    CORRUPT = "corrupt"  # the cached bytes no longer match their digest: evicted
    UP_TO_DATE = "up to date"
    EARLY_CUTOFF = "early cutoff"  # subject: the upstream stage that re-ran with the same output
    WAITING = "waiting"  # dry run: subject runs first
    BLOCKED = "blocked"  # subject: the upstream stage that failed
    STOPPED = "stopped"  # another stage failed and --keep-going is off
    SKIPPED = "skipped"  # text: the stage's explanation
    READING_FILES = "reading files"  # its declared files could not be read (the error says why)
    REMOTE = "remote"  # after: the bytes fetched

    __str__ = str.__str__
    __format__ = str.__format__  # type: ignore[assignment]  # a plain string in f-strings, as in report.json


UNSET = "(unset)"  # ``before``/``after`` of a field the manifest did not have


@dataclass(frozen=True)
class Reason:
    why: Why
    subject: str = ""
    before: Any = None
    after: Any = None
    change: str = ""  # for FILE: added | removed | changed
    text: str = ""  # for SKIPPED: the stage's own sentence

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}


def describe(reasons: list[Reason]) -> str:
    """The words for a person (the terminal, bench.md, report.json's ``reason``): the one place
    reasons become text, so every view says the same thing."""
    return "; ".join(_words(r) for r in reasons)


def _words(reason: Reason) -> str:
    why, subject = reason.why, reason.subject
    if why is Why.FILE:
        return f"{subject} {reason.change}"
    if why is Why.FIELD:
        if subject.endswith("]") and reason.before == UNSET:
            return f"{subject} added: {_short(reason.after)}"
        if subject.endswith("]") and reason.after == UNSET:
            return f"{subject} removed: {_short(reason.before)}"
        return f"{subject}: {_short(reason.before)} → {_short(reason.after)}"
    if why is Why.INPUT:
        return f"{subject} output changed"
    if why is Why.TOOL:
        return f"{subject} {reason.before} → {reason.after}"
    if why is Why.IMPLEMENTATION:
        return f"{subject} implementation v{reason.before} → v{reason.after}"
    if why is Why.EARLY_CUTOFF:
        return f"early cutoff: {subject} output unchanged"
    if why is Why.WAITING:
        return f"after {subject} runs"
    if why is Why.BLOCKED:
        return f"{subject} failed"
    if why is Why.SKIPPED:
        return reason.text
    if why is Why.REMOTE:
        return f"fetched {human_size(reason.after)} from the remote cache"
    return _FIXED[why]


_FIXED = {
    Why.FIRST_BUILD: "first build",
    Why.MISSING: "cache entry missing",
    Why.FORCED: "--force",
    Why.CORRUPT: "cache entry was corrupt (its bytes no longer match its digest): evicted, rebuilding",
    Why.UP_TO_DATE: "up to date",
    Why.STOPPED: "stopped after a failure (use --keep-going)",
    Why.READING_FILES: "reading its input files",
}


def human_size(size: int | None) -> str:
    """1.5 MB; empty for no size."""
    if size is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return ""


def _short(value: Any) -> str:
    text = UNSET if value == UNSET else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
