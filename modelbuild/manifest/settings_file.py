"""Finding the project's settings: the nearest ``modelbuild.toml``, or a ``pyproject.toml``
with a ``[tool.modelbuild]`` table, from a folder upward.

Apart from the project's checks (modelbuild.manifest.project) because a build handed to the
warm server (modelbuild.workers.delegate) needs the cache folder before it imports anything
else: this module reads TOML and nothing more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

DEFAULT_FOLDERS = {"cache_dir": "cache", "out_dir": "build"}

TomlReader = Callable[[Path], "dict[str, Any]"]


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table (tomllib.TOMLDecodeError when it is not TOML)."""
    import tomllib

    return tomllib.loads(path.read_text(encoding="utf-8"))


def find_settings(start: Path, read: TomlReader = read_toml) -> tuple[Path, Path | None, dict[str, Any]]:
    """(the project root, its settings file or None, the settings table) for the nearest folder
    upward from ``start`` with modelbuild.toml or a pyproject with [tool.modelbuild]."""
    for folder in [start, *start.parents]:
        candidate = folder / "modelbuild.toml"
        if candidate.is_file():
            return folder, candidate, read(candidate)
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            table = read(pyproject).get("tool", {}).get("modelbuild")
            if isinstance(table, dict):
                return folder, pyproject, table
    return start, None, {}
