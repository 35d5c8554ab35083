"""docs/manifest.md is generated from the schema and the defaults, and says something about
every field: it cannot drift from what the checker accepts."""

from __future__ import annotations

from pathlib import Path

from modelbuild.manifest.reference import PAGE, render

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_reference_is_the_generated_one() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), "run: python -m modelbuild.manifest.reference"


def test_every_field_has_a_type_and_a_description() -> None:
    rows = [line.split(" | ") for line in render().splitlines() if line.startswith("| `")]
    assert len(rows) > 100
    assert [row[0] for row in rows if not row[3].strip()] == []
    fields = {row[0].strip("| `") for row in rows}
    assert {
        "dims",
        "source.onnx",
        "inputs[].values",
        "prepare.fuse",
        "targets.torchscript.optimize_for_mobile",
        "targets.coreml.optimize[].quantize.dtype",
    } <= fields


def test_no_document_of_the_repository_points_outside_it() -> None:
    documents = [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    assert [str(d) for d in documents if "../shared" in d.read_text(encoding="utf-8")] == []
