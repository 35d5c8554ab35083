"""The fast version lookup answers what importlib.metadata answers."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest

from modelbuild.versions import installed_version

NAMES = [
    "torch",
    "coremltools",
    "executorch",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "numpy",
    "scikit-learn",
    "safetensors",
    "PyYAML",
    "typing_extensions",
    "rich",
]


@pytest.mark.parametrize("name", NAMES)
def test_the_same_version_as_importlib_metadata(name: str) -> None:
    try:
        expected = metadata.version(name)
    except metadata.PackageNotFoundError:
        expected = "not installed"
    assert installed_version(name) == expected


def test_a_missing_distribution_is_not_installed() -> None:
    assert installed_version("surely-no-such-distribution-here") == "not installed"


def test_the_first_path_entry_wins_and_a_new_install_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    early, late = tmp_path / "early", tmp_path / "late"
    for folder, version in ((early, "2.0"), (late, "1.0")):
        info = folder / "fake_tool-{}.dist-info".format(version)
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-tool\nVersion: {version}\n\nbody\n")
    monkeypatch.setattr(sys, "path", [str(late)])
    assert installed_version("fake-tool") == metadata.version("fake-tool") == "1.0"
    monkeypatch.setattr(sys, "path", [str(early), str(late)])
    assert installed_version("Fake_Tool") == metadata.version("fake-tool") == "2.0"
    # An upgrade in place: the folder's listing changes, so does the answer.
    (early / "fake_tool-2.0.dist-info").rename(early / "fake_tool-3.0.dist-info")
    (early / "fake_tool-3.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-tool\nVersion: 3.0\n\n")
    assert installed_version("fake-tool") == metadata.version("fake-tool") == "3.0"
