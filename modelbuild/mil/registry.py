"""Which MIL op each function implements. One decorator line per op; a missing op is an
error naming the op and the package, never a silent zero."""

from __future__ import annotations

from typing import Any, Callable

from modelbuild.registry import FunctionTable

Impl = Callable[..., Any]
TABLE = FunctionTable("MIL op")
OPS = TABLE.entries
implements = TABLE.implements


def supported_ops() -> list[str]:
    from modelbuild.mil import ops  # noqa: F401 - registers every implementation

    return sorted(OPS)
