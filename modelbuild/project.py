"""The project: its root folder and settings (``modelbuild.toml`` or ``[tool.modelbuild]``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbuild.errors import ManifestError, problem, Location

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SETTINGS = {"cache_dir", "out_dir", "jobs", "defaults"}


@dataclass(frozen=True)
class Project:
    root: Path
    cache_dir: Path
    out_dir: Path
    jobs: int
    defaults: dict[str, Any] = field(default_factory=dict)
    settings_file: Path | None = None


def find_root(start: Path) -> tuple[Path, Path | None, dict[str, Any]]:
    """The nearest folder upward holding modelbuild.toml or a pyproject with [tool.modelbuild]."""
    for folder in [start, *start.parents]:
        candidate = folder / "modelbuild.toml"
        if candidate.is_file():
            return folder, candidate, _read_toml(candidate)
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            table = _read_toml(pyproject).get("tool", {}).get("modelbuild")
            if isinstance(table, dict):
                return folder, pyproject, table
    return start, None, {}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError([problem(Location(str(path)), f"invalid TOML: {exc}")]) from None


def load_project(start: Path | None = None, cache_dir: str | None = None, out_dir: str | None = None) -> Project:
    """Resolve the project around ``start`` (the current directory by default)."""
    root, settings_file, table = find_root((start or Path.cwd()).resolve())
    where = str(settings_file) if settings_file else "project settings"
    problems = []
    for key in table:
        if key not in SETTINGS:
            problems.append(problem(Location(where, field=key), f"unknown setting {key!r}; expected one of {', '.join(sorted(SETTINGS))}"))
    jobs = table.get("jobs", 2)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        problems.append(problem(Location(where, field="jobs"), f"expected a positive integer, got {jobs!r}"))
    defaults = table.get("defaults", {})
    if not isinstance(defaults, dict):
        problems.append(problem(Location(where, field="defaults"), f"expected a table, got {defaults!r}"))
    if problems:
        raise ManifestError(problems)
    return Project(
        root=root,
        cache_dir=(root / (cache_dir or table.get("cache_dir", "cache"))).resolve(),
        out_dir=(root / (out_dir or table.get("out_dir", "build"))).resolve(),
        jobs=jobs,
        defaults=defaults,
        settings_file=settings_file,
    )
