"""The project: its root folder and settings (``modelbuild.toml`` or ``[tool.modelbuild]``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbuild.errors import Location, ManifestError, problem
from modelbuild.manifest.settings_file import DEFAULT_FOLDERS, find_settings, read_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SETTINGS = {"cache_dir", "out_dir", "jobs", "defaults", "remote", "workers"}


@dataclass(frozen=True)
class Project:
    root: Path
    cache_dir: Path
    out_dir: Path
    jobs: int
    defaults: dict[str, Any] = field(default_factory=dict)
    settings_file: Path | None = None
    remote: dict[str, Any] | None = None  # the [remote] table, checked (remote.config resolves it)
    workers: dict[str, Any] | None = None  # the [workers] table, checked (workers.config resolves it)


def find_root(start: Path) -> tuple[Path, Path | None, dict[str, Any]]:
    """The nearest folder upward holding modelbuild.toml or a pyproject with [tool.modelbuild],
    its settings file and table (checked: valid TOML, no NUL character)."""
    return find_settings(start, _read_toml)


def _read_toml(path: Path) -> dict[str, Any]:
    from modelbuild.manifest.parse import check_text

    try:
        data = read_toml(path)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError([problem(Location(str(path)), f"invalid TOML: {exc}")]) from None
    check_text(data, {}, str(path))
    return data


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
    if "remote" in table:
        from modelbuild.remote.config import check_settings

        problems += check_settings(table["remote"], where)
    if "workers" in table:
        from modelbuild.workers.config import check_settings as check_worker_settings

        problems += check_worker_settings(table["workers"], where)
    folders = {}
    for key, override, default in (("cache_dir", cache_dir, DEFAULT_FOLDERS["cache_dir"]), ("out_dir", out_dir, DEFAULT_FOLDERS["out_dir"])):
        value = override or table.get(key, default)
        if not isinstance(value, str) or "\x00" in value:
            what = "a folder path without NUL characters" if isinstance(value, str) else "a folder path (a string)"
            problems.append(problem(Location(where, field=key), f"expected {what}, got {value!r}"))
            continue
        folders[key] = (root / value).resolve()
        problems += _folder_problems(key, value, folders[key], root, where)
    if not problems and (
        folders["cache_dir"] == folders["out_dir"] or folders["cache_dir"] in folders["out_dir"].parents or folders["out_dir"] in folders["cache_dir"].parents
    ):
        problems.append(
            problem(
                Location(where, field="out_dir"),
                f"expected out_dir and cache_dir to be separate folders, got {table.get('out_dir', 'build')!r} and {table.get('cache_dir', 'cache')!r}",
            )
        )
    if problems:
        raise ManifestError(problems)
    return Project(
        root=root,
        cache_dir=folders["cache_dir"],
        out_dir=folders["out_dir"],
        jobs=jobs,
        defaults=defaults,
        settings_file=settings_file,
        remote=table.get("remote"),
        workers=table.get("workers"),
    )


def _folder_problems(key: str, value: str, folder: Path, root: Path, where: str) -> list[str]:
    """out_dir and cache_dir are modelbuild's to delete (``clean``): each must be a folder of its
    own inside the project, never the project itself or a folder above it."""
    at = Location(where, field=key)
    if folder == root:
        return [
            problem(at, f"expected a folder inside the project, got {value!r}, which is the project root itself (`modelbuild clean` would delete the project)")
        ]
    if root not in folder.parents:
        return [problem(at, f"expected a folder inside the project ({root}), got {value!r}, which resolves to {folder}")]
    return []


def check_manifests_outside(project: Project, manifests: list[Path]) -> None:
    """No manifest may live inside out_dir or cache_dir: ``clean`` would delete it."""
    for folder, key in ((project.out_dir, "out_dir"), (project.cache_dir, "cache_dir")):
        for manifest in manifests:
            if folder in manifest.parents:
                where = str(project.settings_file) if project.settings_file else "project settings"
                raise ManifestError([problem(Location(where, field=key), f"expected a folder that holds no manifests, got {folder}, which holds {manifest}")])
