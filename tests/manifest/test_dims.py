"""Named dimensions (``dims:``): one declaration, used by name in several inputs, refused
when its uses disagree, so every converter can give the inputs one shared symbol."""

from __future__ import annotations

from pathlib import Path

from modelbuild.manifest.load import load_models
from modelbuild.manifest.shapes import Dim
from tests.manifest.test_errors import problems, write

TEXT = """\
name: text
source:
  factory: models.tiny:build
dims:
  seq: {min: 1, max: 128, default: 32}
inputs:
  - {name: input_ids, dtype: int32, shape: [1, seq], range: [0, 100]}
  - {name: attention_mask, dtype: int32, shape: [1, seq], range: [0, 2]}
"""


def test_a_named_dimension_resolves_to_one_range_in_every_input(tmp_path: Path) -> None:
    [model] = load_models([write(tmp_path, TEXT)], tmp_path)
    ids, mask = model.data["inputs"]
    assert ids["shape"][1] == {"min": 1, "max": 128, "default": 32, "name": "seq"}
    assert Dim.parse(mask["shape"][1]) == Dim(1, 128, 32, "seq")
    assert Dim.parse(ids["shape"][1]).symbol(ids, 1) == "seq"
    assert Dim.parse(ids["shape"][0]).symbol(ids, 0) == "input_ids_0"


def test_inline_and_declared_forms_give_the_same_data(tmp_path: Path) -> None:
    inline = TEXT.replace("[1, seq]", "[1, {min: 1, max: 128, default: 32, name: seq}]")
    [declared] = load_models([write(tmp_path, TEXT, "a.yaml")], tmp_path)
    (tmp_path / "b").mkdir()
    [written] = load_models([write(tmp_path / "b", inline, "b.yaml")], tmp_path)
    assert declared.data["inputs"] == written.data["inputs"]


def test_an_undeclared_name_is_refused_with_the_declared_ones(tmp_path: Path) -> None:
    found = problems(tmp_path, TEXT.replace("shape: [1, seq], range: [0, 2]", "shape: [1, sq], range: [0, 2]"))
    assert found == ["m.yaml:8: inputs[1].shape[1]: expected a dimension declared under dims (declared: seq), got 'sq'"]


def test_one_name_with_two_ranges_is_refused(tmp_path: Path) -> None:
    text = TEXT.replace("shape: [1, seq], range: [0, 2]", "shape: [1, {min: 1, max: 64, name: seq}], range: [0, 2]")
    [found] = problems(tmp_path, text)
    expected = "expected dimension 'seq' to be {min: 1, max: 128, default: 32} as at inputs[0].shape[1], got {min: 1, max: 64, default: 1}"
    assert found.startswith(f"m.yaml:8: inputs[1].shape[1]: {expected}")


def test_a_declared_range_is_checked_where_it_is_declared(tmp_path: Path) -> None:
    found = problems(tmp_path, TEXT.replace("{min: 1, max: 128, default: 32}", "{min: 64, max: 8}"))
    assert found == ["m.yaml:5: dims.seq: expected min <= max, got min 64 > max 8"]
    found = problems(tmp_path, TEXT.replace("default: 32", "default: 300"))
    assert found == ["m.yaml:5: dims.seq.default: expected a default within [1, 128], got 300"]


def test_a_name_that_is_another_axis_generated_name_is_refused(tmp_path: Path) -> None:
    text = TEXT.replace("dims:\n  seq:", "dims:\n  input_ids_1:").replace("[1, seq]", "[1, input_ids_1]", 1)
    text = text.replace("shape: [1, seq], range: [0, 2]", "shape: [{min: 1, max: 4}, input_ids_1], range: [0, 2]")
    text = text.replace("shape: [1, input_ids_1], range: [0, 100]", "shape: [1, {min: 1, max: 9}], range: [0, 100]")
    found = problems(tmp_path, text)
    assert any("expected a dimension name other than 'input_ids_1': it is the generated name of inputs[0].shape[1]" in p for p in found), found


def test_concrete_shapes_give_a_shared_dimension_one_size(tmp_path: Path) -> None:
    text = TEXT + "validate:\n  shapes: [default, {input_ids: [1, 10], attention_mask: [1, 12]}]\n"
    [found] = problems(tmp_path, text)
    assert found.endswith("validate.shapes[1]: expected one size for dimension 'seq', got 10 for input_ids[1] and 12 for attention_mask[1]")
    text = TEXT + "benchmark:\n  shapes: [{input_ids: [1, 10]}]\n"
    [found] = problems(tmp_path, text)
    assert "got 10 for input_ids[1] and 32 for attention_mask[1] (its default)" in found
    [model] = load_models([write(tmp_path, TEXT + "validate:\n  shapes: [{input_ids: [1, 10], attention_mask: [1, 10]}]\n")], tmp_path)
    assert model.data["validate"]["shapes"][0]["input_ids"] == [1, 10]


def test_schema_refuses_a_name_that_is_not_an_identifier(tmp_path: Path) -> None:
    [found] = problems(tmp_path, TEXT.replace("[1, seq], range: [0, 100]", "[1, 'seq len'], range: [0, 100]"))
    assert "inputs[0].shape[1]: expected an integer from 1 to 1048576, {min, max, default} within that range, or the name of a dimension" in found
