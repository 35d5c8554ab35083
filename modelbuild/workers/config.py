"""``[workers]`` settings: warm or cold, and how long an idle warm server stays.

Precedence: ``--cold`` on the command line, then ``MODELBUILD_WORKERS=cold|warm`` and
``MODELBUILD_WORKERS_IDLE`` (seconds), then the project's ``[workers]`` table, then the
defaults (warm where the platform can fork a warm server, 15 minutes).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, NamedTuple

from modelbuild.errors import Location, UserError, problem, table_problems

DEFAULT_IDLE = 900.0
FIELDS = {"warm", "idle_timeout"}


class WorkerSettings(NamedTuple):
    warm: bool
    idle: float  # seconds an unused server waits before it stops
    why_cold: str | None = None  # why this build uses fresh processes, when it does


def check_settings(table: Any, where: str) -> list[str]:
    """Problems in a ``[workers]`` table, each naming the field, what was expected and found."""
    is_table, problems = table_problems(table, "workers", FIELDS, where)
    if not is_table:
        return problems
    if "warm" in table and not isinstance(table["warm"], bool):
        problems.append(problem(Location(where, field="workers.warm"), f"expected true or false, got {table['warm']!r}"))
    if "idle_timeout" in table and parse_duration(table["idle_timeout"]) is None:
        expected = "expected seconds (a positive number) or a duration like '15m'"
        problems.append(problem(Location(where, field="workers.idle_timeout"), f"{expected}, got {table['idle_timeout']!r}"))
    return problems


def parse_duration(value: Any) -> float | None:
    """Seconds from 90, 90.5, '90s', '15m' or '2h'; None when it is none of those."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    if isinstance(value, str):
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*", value)
        if found:
            seconds = float(found.group(1)) * {"s": 1, "m": 60, "h": 3600}[found.group(2) or "s"]
            return seconds if seconds > 0 else None
    return None


def resolve(table: dict[str, Any] | None, cold_flag: bool) -> WorkerSettings:
    table = table or {}
    idle = parse_duration(table.get("idle_timeout", DEFAULT_IDLE)) or DEFAULT_IDLE
    variable = os.environ.get("MODELBUILD_WORKERS_IDLE")
    if variable:
        parsed = parse_duration(variable)
        if parsed is None:
            raise UserError(f"MODELBUILD_WORKERS_IDLE: expected seconds or a duration like '15m', got {variable!r}")
        idle = parsed
    mode = os.environ.get("MODELBUILD_WORKERS", "")
    if mode not in ("", "warm", "cold"):
        raise UserError(f"MODELBUILD_WORKERS: expected 'warm' or 'cold', got {mode!r}")
    if cold_flag:
        return WorkerSettings(False, idle, "--cold")
    if mode == "cold":
        return WorkerSettings(False, idle, "MODELBUILD_WORKERS=cold")
    if mode != "warm" and table.get("warm") is False:
        return WorkerSettings(False, idle, "[workers] warm = false")
    if not sys.platform.startswith("linux"):
        # A fork of a process that loaded Apple's frameworks (coremltools does on macOS) is
        # not safe there; fresh processes are.
        return WorkerSettings(False, idle, f"warm workers need Linux (this is {sys.platform})")
    return WorkerSettings(True, idle)
