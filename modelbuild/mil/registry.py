"""Which MIL op each function implements. One decorator line per op; a missing op is an
error naming the op and the package, never a silent zero."""

from __future__ import annotations

from typing import Any, Callable

Impl = Callable[..., Any]
OPS: dict[str, Impl] = {}


def implements(*names: str) -> Callable[[Impl], Impl]:
    def register(function: Impl) -> Impl:
        for name in names:
            if name in OPS:
                raise ValueError(f"MIL op {name!r} is implemented twice")
            OPS[name] = function
        return function

    return register


def supported_ops() -> list[str]:
    from modelbuild.mil import ops  # noqa: F401 - registers every implementation

    return sorted(OPS)
