"""Finding the project's settings (modelbuild.manifest.settings_file), as the thin client does."""

from __future__ import annotations

from pathlib import Path

from modelbuild.manifest.settings_file import find_settings


def test_the_nearest_settings_upward_win_and_a_pyproject_counts_only_with_its_table(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_settings(deep) == (deep, None, {})  # none anywhere: the folder itself, no settings
    (tmp_path / "modelbuild.toml").write_text('cache_dir = "outer"\n')
    (tmp_path / "a" / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no [tool.modelbuild]: passed over
    assert find_settings(deep) == (tmp_path, tmp_path / "modelbuild.toml", {"cache_dir": "outer"})
    (tmp_path / "a" / "b" / "pyproject.toml").write_text('[tool.modelbuild]\ncache_dir = "inner"\n')
    assert find_settings(deep) == (tmp_path / "a" / "b", tmp_path / "a" / "b" / "pyproject.toml", {"cache_dir": "inner"})
    read: list[Path] = []
    find_settings(deep, lambda path: read.append(path) or {"tool": {"modelbuild": {}}})
    assert read == [tmp_path / "a" / "b" / "pyproject.toml"]  # the reader given is the one used
