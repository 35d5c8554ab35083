"""Each target owns its ``targets.<name>`` table: the shipped schema is generated from the
target classes, and every default a target fills in is a value its own schema accepts."""

from __future__ import annotations

import jsonschema
import pytest

from modelbuild.manifest.schema import SHIPPED_PATH, render, schema
from modelbuild.targets import TARGETS


def test_the_shipped_schema_is_the_generated_one() -> None:
    # Regenerate with: modelbuild schema > modelbuild/schema/manifest.schema.json
    assert SHIPPED_PATH.read_text(encoding="utf-8") == render()


def test_every_registered_target_has_a_table_and_a_benchmark_backend() -> None:
    model = schema()["$defs"]["model"]["properties"]
    assert sorted(model["targets"]["properties"]) == TARGETS.names()
    assert model["benchmark"]["properties"]["backends"]["items"]["enum"] == ["torch", *TARGETS.names()]


@pytest.mark.parametrize("name", TARGETS.names())
def test_defaults_are_values_the_target_schema_accepts(name: str) -> None:
    target = TARGETS.get(name)
    table = schema()["$defs"]["model"]["properties"]["targets"]["properties"][name]
    data = {"inputs": [{"name": "x", "shape": [1, {"min": 1, "max": 8}]}]}
    written = {table_name: {} for table_name in target.table_defaults}
    resolved = target.apply_defaults(written, data)
    jsonschema.Draft202012Validator(table).validate(resolved)
    assert set(target.defaults) <= set(resolved)
    # Writing a default out gives the same table as leaving it out (both end up in stage keys).
    assert target.apply_defaults(resolved, data) == resolved


def test_a_float16_core_ml_program_gets_a_tolerance_that_fits_it() -> None:
    coreml = TARGETS.get("coreml")
    assert coreml.default_tolerance({"precision": "float16"}) == {"atol": 5e-2, "rtol": 5e-2}
    assert coreml.default_tolerance({"precision": "float32"}) == {}
    assert TARGETS.get("onnx").default_tolerance({}) == {}
