"""Why a stage re-runs, in words a person reads: lists and tables name the element that changed."""

from __future__ import annotations

from modelbuild.graph.keys import explain
from modelbuild.report.reasons import describe


def _material(params: dict) -> dict:
    return {"stage": "capture", "params": params, "files": {}, "inputs": {}, "tools": {}, "implementation": 1}


def test_named_tables_are_matched_by_name_not_position() -> None:
    old = {"inputs": [{"name": "input_ids", "dtype": "int32"}]}
    new = {"inputs": [{"name": "attention_mask", "dtype": "int32"}, {"name": "input_ids", "dtype": "int64"}]}
    words = describe(explain(_material(old), _material(new)))
    assert words == "inputs[input_ids].dtype: 'int32' → 'int64'; inputs[attention_mask] added: {'name': 'attention_mask', 'dtype': 'int32'}"


def test_lists_of_values_name_what_was_added_or_removed() -> None:
    old = {"float32_modules": ["model.norm", "model.head"], "optimize": [{"quantize": {}}, {"prune": {}}]}
    new = {"float32_modules": ["model.head"], "optimize": [{"quantize": {"dtype": "int8"}}]}
    words = describe(explain(_material(old), _material(new)))
    assert words == "float32_modules[0] removed: 'model.norm'; optimize[0].quantize.dtype: (unset) → 'int8'; optimize[1] removed: {'prune': {}}"


def test_same_length_lists_still_compare_element_by_element() -> None:
    words = describe(explain(_material({"shape": [1, 3, 224, 224]}), _material({"shape": [1, 3, 256, 224]})))
    assert words == "shape[2]: 224 → 256"
