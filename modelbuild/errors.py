"""The error hierarchy, sorted by who has to act.

``UserError`` means the person must fix their input: exit 2, no traceback. ``StageFailure``
means a build step failed on valid input: exit 1, log path, traceback only with ``-v``.
Anything else escaping is a bug in modelbuild and keeps its traceback.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Location(NamedTuple):
    """Where a value came from: the file, the line when the format has lines, the field path.
    (A named tuple, not a dataclass: every command imports this module, and a build handed to
    the warm server should not pay 6 ms for ``dataclasses``.)"""

    file: str
    line: int | None = None
    field: str = ""

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}" if self.field else where


class UserError(Exception):
    """Bad input a person can fix. Exit code 2."""

    exit_code = 2


class Unavailable(UserError):
    """Something outside the project cannot be used now (a remote cache that is unreachable
    or refuses us). Exit code 1: the input was fine, and trying again may work."""

    exit_code = 1


class IntegrityError(UserError):
    """A cache entry no longer holds the bytes it was recorded with. Exit code 1: the input was
    fine, and building again repairs it."""

    exit_code = 1


class ManifestError(UserError):
    """One or more problems in manifests, each already phrased as ``file:line: field: message``."""

    def __init__(self, problems: list[str], valid: list | None = None) -> None:
        self.problems = list(problems)
        self.valid = list(valid or [])  # what loaded fine: --keep-going builds these
        super().__init__("\n".join(self.problems))


def first_line(exc: BaseException) -> str:
    """An exception's first line, or its type name when it has no message: converters raise
    multi-page errors, and a summary row wants the sentence that names the problem."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def problem(location: Location, message: str) -> str:
    """Format one manifest problem the way every message in modelbuild reads."""
    return f"{location}: {message}"


def table_problems(table: Any, name: str, known: set[str] | frozenset[str], where: str, shape: str = "a table") -> tuple[bool, list[str]]:
    """A settings table (``[remote]``, ``[workers]``): whether it is a table at all, and a
    problem for each key it does not know, named ``name.key``."""
    if not isinstance(table, dict):
        return False, [problem(Location(where, field=name), f"expected {shape}, got {table!r}")]
    expected = ", ".join(sorted(known))
    return True, [problem(Location(where, field=f"{name}.{key}"), f"unknown setting {key!r}; expected one of {expected}") for key in table if key not in known]


class StageFailure(Exception):
    """A stage ran on valid input and failed. Exit code 1."""

    exit_code = 1
