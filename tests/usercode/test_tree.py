"""What a stage imported, found from a mark in sys.modules (modelbuild.usercode.tree)."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest

from modelbuild.usercode.tree import ModuleMark, forget_modules_under, invalidate_finders_under


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("mb_mark_")]:
        del sys.modules[name]


def test_the_mark_sees_what_was_imported_after_it_and_only_that(folder: Path) -> None:
    (folder / "mb_mark_before.py").write_text("X = 1\n")
    (folder / "mb_mark_after.py").write_text("X = 2\n")
    importlib.import_module("mb_mark_before")
    mark = ModuleMark()
    importlib.import_module("mb_mark_after")
    added = mark.close()
    assert "mb_mark_after" in added and "mb_mark_before" not in added
    assert not any(name.startswith("__modelbuild_mark_") for name in sys.modules)  # closed: the mark is gone


def test_a_module_imported_again_after_the_mark_counts_as_new(folder: Path) -> None:
    """Removed and imported again (a stage setting a package aside, a user module reloaded
    fresh): it now sits after the mark, so it is checked and forgotten like any other."""
    (folder / "mb_mark_again.py").write_text("X = 1\n")
    importlib.import_module("mb_mark_again")
    mark = ModuleMark()
    del sys.modules["mb_mark_again"]
    importlib.import_module("mb_mark_again")
    assert "mb_mark_again" in mark.close()


def test_a_stage_that_removed_the_mark_gets_every_module(folder: Path) -> None:
    """The safe side: with no mark to stop at, every module is a candidate (the full scan)."""
    mark = ModuleMark()
    del sys.modules[mark.name]
    added = mark.close()
    assert "sys" in added and "modelbuild.usercode.tree" in added
    assert not any(name.startswith("__modelbuild_mark_") for name in added)


def test_nested_marks_do_not_report_each_other(folder: Path) -> None:
    outer = ModuleMark()
    inner = ModuleMark()
    (folder / "mb_mark_inner.py").write_text("X = 1\n")
    importlib.import_module("mb_mark_inner")
    assert inner.close() == ["mb_mark_inner"]
    assert outer.close() == ["mb_mark_inner"]


def test_only_modules_under_the_roots_among_those_named_are_forgotten(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    (folder / "mb_mark_user.py").write_text("X = 1\n")
    mark = ModuleMark()
    importlib.import_module("mb_mark_user")
    sys.modules["mb_mark_elsewhere"] = types.ModuleType("mb_mark_elsewhere")  # no file: not under any root
    added = mark.close()
    dropped = forget_modules_under([folder], added)
    assert dropped == ["mb_mark_user"] and "mb_mark_user" not in sys.modules and "mb_mark_elsewhere" in sys.modules


def test_a_file_written_into_a_folder_already_imported_from_is_found(folder: Path) -> None:
    """A finder caches its folder's listing: the folder's finder is told to look again."""
    (folder / "mb_mark_first.py").write_text("X = 1\n")
    importlib.import_module("mb_mark_first")
    (folder / "mb_mark_second.py").write_text("X = 2\n")
    finder = sys.path_importer_cache[str(folder)]
    finder._path_mtime = folder.stat().st_mtime  # type: ignore[attr-defined]  # a coarse clock: the cached listing looks current
    invalidate_finders_under([folder])
    assert importlib.import_module("mb_mark_second").X == 2
