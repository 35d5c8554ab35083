"""Which files a model's code is made of, found by reading its imports (never running them)."""

from __future__ import annotations

from pathlib import Path

from modelbuild.usercode.discover import find_local_module, imported_package_versions, local_module_files


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_local_imports_are_followed_transitively_relative_ones_included(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "models/__init__.py": "",
            "models/net.py": "from .layers import Block\nimport torch\n",
            "models/layers/__init__.py": "from . import conv\n",
            "models/layers/conv.py": "from ..util import helper\n",
            "models/util.py": "",
            "models/unused.py": "raise SystemExit('never read as an import of net')\n",
        },
    )
    found = [p.relative_to(tmp_path).as_posix() for p in local_module_files(["models.net"], [tmp_path])]
    assert found == ["models/__init__.py", "models/layers/__init__.py", "models/layers/conv.py", "models/net.py", "models/util.py"]


def test_the_manifest_folder_wins_over_the_project_root(tmp_path: Path) -> None:
    write(tmp_path, {"helpers.py": "", "sub/helpers.py": ""})
    assert find_local_module("helpers", [tmp_path / "sub", tmp_path]) == tmp_path / "sub" / "helpers.py"
    assert find_local_module("helpers", [tmp_path]) == tmp_path / "helpers.py"
    assert find_local_module("missing", [tmp_path]) is None


def test_a_file_that_does_not_parse_adds_nothing_and_breaks_nothing(tmp_path: Path) -> None:
    write(tmp_path, {"m.py": "import helper\n", "helper.py": "def broken(:\n"})
    assert [p.name for p in local_module_files(["m"], [tmp_path])] == ["helper.py", "m.py"]


def test_installed_packages_the_code_imports_are_versioned_local_ones_are_not(tmp_path: Path) -> None:
    write(tmp_path, {"m.py": "import numpy\nimport json\nimport helper\n", "helper.py": ""})
    versions = imported_package_versions([tmp_path / "m.py"], [tmp_path])
    assert "numpy" in versions and "json" not in versions and "helper" not in versions
