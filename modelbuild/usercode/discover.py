"""Which local files a model's code is made of, found by reading (never importing) them.

A factory module usually imports siblings (``from .layers import Block``); each of those is
part of what the model computes, so each is part of the key and of the snapshot. Imports
are followed through the AST, transitively, the way Python would resolve them from the
manifest's folder and then the project root.
"""

from __future__ import annotations

import ast
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

MAX_FILES = 2000  # a project that imports more local modules than this is not a model


def find_local_module(module: str, bases: Iterable[Path]) -> Path | None:
    """The file of ``module`` in the first base that has it (``a/b.py`` or ``a/b/__init__.py``)."""
    parts = module.split(".")
    for base in bases:
        candidate = base.joinpath(*parts)
        for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
            if path.is_file():
                return Path(os.path.normpath(path))
    return None


def local_module_files(modules: Iterable[str], bases: list[Path]) -> list[Path]:
    """The files of ``modules`` and of every local module they import, transitively: the
    packages' ``__init__.py`` on the way included, since importing ``a.b`` runs ``a``."""
    found: dict[Path, str] = {}
    queue = list(modules)
    seen: set[str] = set()
    while queue and len(found) < MAX_FILES:
        name = queue.pop(0)
        if name in seen or not name:
            continue
        seen.add(name)
        parts = name.split(".")
        for depth in range(1, len(parts)):  # parent packages
            queue.append(".".join(parts[:depth]))
        path = find_local_module(name, bases)
        if path is None or path in found:
            continue
        found[path] = name
        queue.extend(_imported_names(path.read_bytes(), name, path.name == "__init__.py"))
    return sorted(found)


@lru_cache(maxsize=1024)
def _imported_names(source: bytes, module: str, is_package: bool) -> tuple[str, ...]:
    """Every module name an import in ``source`` may load, relative imports resolved."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ()
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".") if package else []
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                names.append(base)
            # ``from pkg import mod`` may import a submodule
            names.extend(f"{base}.{alias.name}" if base else alias.name for alias in node.names if alias.name != "*")
    return tuple(names)


def imported_package_versions(files: list[Path], bases: list[Path]) -> dict[str, str]:
    """Versions of the installed distributions the model's code imports (torch, transformers…).

    Upgrading one of them can change what the factory builds, so it is part of the key.
    """
    names: set[str] = set()
    for path in files:
        sources = sorted(path.rglob("*.py")) if path.is_dir() else ([path] if path.suffix == ".py" else [])
        for py in sources:
            names |= _top_level_imports(py.read_bytes())
    versions = {}
    for name in sorted(names):
        if name in sys.stdlib_module_names or any((base / name).exists() or (base / f"{name}.py").exists() for base in bases):
            continue
        version = _distribution_version(name)
        if version:
            versions[name] = version
    return versions


@lru_cache(maxsize=256)
def _top_level_imports(source: bytes) -> frozenset[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return frozenset(names)


@lru_cache(maxsize=256)
def _distribution_version(import_name: str) -> str | None:
    from importlib import metadata

    from modelbuild.versions import installed_version

    version = installed_version(import_name)  # importlib.metadata's answer, read fast (a few ms a name otherwise)
    if version != "not installed":
        return version
    dists = _packages_distributions().get(import_name)
    if dists:
        try:
            return f"{dists[0]} {metadata.version(dists[0])}"
        except metadata.PackageNotFoundError:
            return None
    return None


@lru_cache(maxsize=1)
def _packages_distributions() -> Mapping[str, list[str]]:
    from importlib import metadata

    return metadata.packages_distributions()
