"""Project-relative labels for the user's files, and import trees built from snapshots.

A label is a file's path relative to the project root (``manifests/models/tiny.py``): it
names the file in ``plan``'s reasons, it is part of the key (so moving a file rebuilds), and
it is where the snapshot is laid out in a stage's import tree. Python then imports the
snapshot with the same module names the user's folders give it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
import types
from pathlib import Path
from typing import Iterator


class OutsideProject(ValueError):
    """A declared file that lies (or, through a symlink, resolves) outside the project root."""


def label_of(path: Path, root: Path) -> str:
    """``path`` relative to the project root, as a POSIX path; OutsideProject otherwise.

    Symlinks are followed for the check: a link that leads out of the project would copy a
    file the project does not own into the cache (and into a shared cache after it).
    """
    lexical = Path(os.path.normpath(path))
    for candidate in (lexical, lexical.resolve()):
        try:
            candidate.relative_to(root)
        except ValueError:
            raise OutsideProject(f"{path} resolves to {lexical.resolve()}, outside the project root {root}") from None
    return lexical.relative_to(root).as_posix()


def folder_label(folder: Path, root: Path) -> str:
    """The manifest's folder as a label ("" when it is the project root)."""
    return "" if folder == root else label_of(folder, root)


def lay_out(files: dict[str, Path], dest: Path) -> None:
    """Copy each snapshot to ``dest/<label>`` (copies, not links: a link would tie the two
    store entries' stat signatures together). Folders first, so a module snapshotted on its
    own lands over the same module inside a snapshotted folder."""
    for label in sorted(files, key=lambda item: (files[item].is_file(), item)):
        source = files[label]
        target = dest / label
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, copy_function=shutil.copyfile, dirs_exist_ok=True)
        else:
            shutil.copyfile(source, target)


def import_roots(tree: Path, folder_label: str) -> list[Path]:
    """Where Python looks for the user's modules: the manifest's folder, then the project root
    (the order a build has always used), both inside the snapshot tree."""
    roots = [tree / folder_label] if folder_label not in ("", ".") else []
    return roots + [tree]


@contextlib.contextmanager
def isolated_imports(roots: list[Path], set_aside: str | None = None) -> Iterator[None]:
    """Import from ``roots`` for the duration of one stage, then forget every module loaded
    from them, so the next stage in this worker (another project, another ``models.tiny``)
    imports its own code instead of reusing this one's.

    ``set_aside``: a top-level package name the user's code is about to import (``models``).
    A package of that name imported before (another project's) is set aside meanwhile, then
    put back, so the import finds the user's and not a stale one."""
    paths = [str(r) for r in dict.fromkeys(roots)]
    aside = {k: v for k, v in sys.modules.copy().items() if set_aside and _in_package(k, set_aside)}
    for name in aside:
        del sys.modules[name]
    mark = ModuleMark()
    sys.path[:0] = paths
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for path in paths:
            while path in sys.path:
                sys.path.remove(path)
            sys.path_importer_cache.pop(path, None)
        added = mark.close()
        forget_modules_under(roots, added)
        if set_aside:
            for name in added:
                if _in_package(name, set_aside) and not _in_package(name, "modelbuild"):
                    sys.modules.pop(name, None)
        sys.modules.update(aside)
        importlib.invalidate_caches()


class ModuleMark:
    """Where ``sys.modules`` stood when a stage began, so that its end finds what the stage
    imported without reading every module.

    A warm server's fork holds some 5,000 modules it shares with the server page by page.
    Reading them all from Python (a copy of ``sys.modules``, ``vars()`` of each) writes their
    reference counts, which copies every page they live on: 30 ms a stage, more than the
    stage. The mark is an empty module under a name of its own; the dictionary keeps its
    insertion order, so what was imported (or imported again) after it comes after it, and is
    read from the end. A module put in place of an older one under the same name without a
    removal is not seen; a stage that removed the mark itself gets every name (the full scan).
    """

    _PREFIX = "__modelbuild_mark_"
    _count = 0

    def __init__(self) -> None:
        ModuleMark._count += 1
        self.name = f"{self._PREFIX}{os.getpid()}_{ModuleMark._count}__"
        sys.modules[self.name] = types.ModuleType(self.name)

    def added(self) -> list[str]:
        """The names put into ``sys.modules`` since the mark, newest first."""
        for _attempt in range(5):
            names: list[str] = []
            try:
                for name in reversed(sys.modules):
                    if name == self.name:
                        return [n for n in names if not n.startswith(self._PREFIX)]
                    names.append(name)
            except RuntimeError:  # another thread imported meanwhile: read again
                continue
            break  # the mark is gone
        return [n for n in sys.modules.copy() if not n.startswith(self._PREFIX)]

    def close(self) -> list[str]:
        """The names added since the mark; the mark removed."""
        added = self.added()
        sys.modules.pop(self.name, None)
        return added


def invalidate_finders_under(roots: list[Path]) -> None:
    """``importlib.invalidate_caches()`` for the path entries under ``roots`` only: a finder
    caches its folder's listing, and a folder of the user's or the store may have changed since
    the last import from it. Every other finder is left alone: a warm server's fork holds
    thousands (one per folder torch and coremltools ever imported from), and calling each
    copies the pages they live on, for folders no stage writes."""
    prefixes = tuple(str(r) for r in roots)
    for entry in list(sys.path_importer_cache):
        if isinstance(entry, str) and entry.startswith(prefixes):
            finder = sys.path_importer_cache.get(entry)
            if finder is not None and hasattr(finder, "invalidate_caches"):
                finder.invalidate_caches()


def forget_modules_under(roots: list[Path], names: list[str] | None = None) -> list[str]:
    """Drop from ``sys.modules`` every module whose file lies under one of ``roots``: among
    ``names`` (what a stage imported, from a ModuleMark), or among all modules.

    modelbuild's own modules always stay, even when a root is modelbuild's checkout: a
    second copy of ``modelbuild.errors`` would make its exceptions slip past the CLI's
    handlers."""
    prefixes = tuple(str(r) + os.sep for r in roots)
    dropped = []
    # dict.copy(), not list(items()): iterating can run a finalizer, let another thread
    # import, and fail with "dictionary changed size during iteration".
    candidates = sys.modules.copy() if names is None else {n: sys.modules[n] for n in names if n in sys.modules}
    for name, module in candidates.items():
        if not _in_package(name, "modelbuild") and _under(module, prefixes):
            del sys.modules[name]
            dropped.append(name)
    return dropped


def _in_package(name: str, top: str) -> bool:
    return name == top or name.startswith(top + ".")


def _under(module: object, prefixes: tuple[str, ...]) -> bool:
    """Read from the module's own namespace: ``getattr`` would run a lazy module's
    ``__getattr__`` (torch and coremltools have some), which may import, or raise."""
    try:
        namespace = vars(module)
    except TypeError:  # sys.modules may hold objects that are not modules
        return False
    where = namespace.get("__file__")
    if where:
        return str(where).startswith(prefixes)
    paths = namespace.get("__path__")  # a namespace package has no __file__
    try:
        return bool(paths) and all(str(p).startswith(prefixes) or str(p) + os.sep in prefixes for p in list(paths or ()))
    except Exception:  # noqa: BLE001 - an odd __path__ is not ours
        return False
