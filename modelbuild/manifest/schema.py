"""The manifest JSON Schema, and its errors phrased for people.

The schema is assembled from two places: ``schema/manifest.base.json`` (everything but the
targets, written by hand) and the target registry (each target declares the options of its
``targets.<name>`` table). Validation uses the assembled schema, so a target registered by a
test or an extension is validated like a built-in. ``schema/manifest.schema.json`` ships the
result for editors; ``modelbuild schema > modelbuild/schema/manifest.schema.json`` writes it and a
test keeps it equal.
"""

from __future__ import annotations

import copy
import difflib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
BASE_PATH = SCHEMA_DIR / "manifest.base.json"
SHIPPED_PATH = SCHEMA_DIR / "manifest.schema.json"
TOLERANCE_FIELDS = ("atol", "rtol", "on_failure")  # every target's ``validate`` table takes the model's


def schema() -> dict[str, Any]:
    """The whole manifest schema for the targets registered now."""
    return _assembled(_registered())


def schema_digest() -> str:

    return _digest(_registered())


def render() -> str:
    """The text of the shipped schema file."""
    return json.dumps(schema(), indent=2) + "\n"


def _registered() -> tuple[tuple[str, int], ...]:
    from modelbuild.targets import TARGETS

    return tuple((name, id(TARGETS.get(name))) for name in TARGETS.names())


@lru_cache(maxsize=4)
def _base() -> dict[str, Any]:
    return json.loads(BASE_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=4)
def _assembled(registered: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    from modelbuild.targets import TARGETS

    full = copy.deepcopy(_base())
    full.pop("$comment", None)
    model = full["$defs"]["model"]["properties"]
    tolerance = {k: model["validate"]["properties"][k] for k in TOLERANCE_FIELDS}
    model["targets"]["properties"] = {name: _target_schema(TARGETS.get(name), tolerance) for name, _ in registered}
    model["benchmark"]["properties"]["backends"]["items"]["enum"] = ["torch", *(name for name, _ in registered)]
    return full


def _target_schema(target: Any, tolerance: dict[str, Any]) -> dict[str, Any]:
    validate = {
        "type": "object",
        "additionalProperties": False,
        "description": "this target's verification settings, over the model's validate",
        "properties": {**tolerance, **target.validate_options},
    }
    summary = (target.__doc__ or target.name).strip().splitlines()[0]
    return {
        "type": ["object", "null"],
        "additionalProperties": False,
        "description": summary,
        "properties": {**copy.deepcopy(target.options), "validate": validate},
    }


@lru_cache(maxsize=4)
def _digest(registered: tuple[tuple[str, int], ...]) -> str:
    from modelbuild.store.hashing import digest_json

    return digest_json(_assembled(registered))


@lru_cache(maxsize=4)
def _model_validator(registered: tuple[tuple[str, int], ...]) -> Any:
    import jsonschema  # imported here: only a changed manifest needs validating

    model_schema = {"$ref": "#/$defs/model", "$defs": _assembled(registered)["$defs"]}
    return jsonschema.Draft202012Validator(model_schema)


def model_errors(data: Any) -> Iterator[tuple[str, str]]:
    """Yield (field path, message) for every schema violation of one model."""
    errors = sorted(_model_validator(_registered()).iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    for error in errors:
        path = _path(error.absolute_path)
        yield from _phrase(error, path)


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _found(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _phrase(error: Any, path: str) -> Iterator[tuple[str, str]]:
    kind = error.validator
    expected = error.schema.get("x-expected") if isinstance(error.schema, dict) else None
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extras = sorted(set(error.instance) - set(allowed))
        for extra in extras:
            close = difflib.get_close_matches(extra, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; expected one of {', '.join(allowed)}"
            field = f"{path}.{extra}" if path else extra
            yield f"{field}#key", f"unknown field {extra!r}{hint}"
        return
    if kind == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        for name in missing:
            yield path, f"missing required field {name!r}"
        return
    if kind == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        want = want.replace("object", "table").replace("array", "list")
        yield path, f"expected {expected or want}, got {_type_name(error.instance)} {_found(error.instance)}"
        return
    if kind == "enum":
        options = ", ".join(str(v) for v in error.validator_value)
        close = difflib.get_close_matches(str(error.instance), [str(v) for v in error.validator_value], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        yield path, f"expected one of {options}, got {_found(error.instance)}{hint}"
        return
    if kind in ("minimum", "maximum"):
        word = "at least" if kind == "minimum" else "at most"
        yield path, f"expected {word} {error.validator_value}, got {_found(error.instance)}"
        return
    if kind in ("minItems", "maxItems", "minProperties", "maxProperties"):
        word = "at least" if kind.startswith("min") else "at most"
        unit = "entries" if "Items" in kind else "keys"
        yield path, f"expected {word} {error.validator_value} {unit}, got {len(error.instance)}"
        return
    if kind in ("pattern", "maxLength"):
        yield path, f"expected {expected or 'a value matching ' + error.validator_value}, got {_found(error.instance)}"
        return
    if kind in ("oneOf", "anyOf"):
        yield path, f"expected {expected or 'a different value'}, got {_found(error.instance)}"
        return
    yield path, f"{error.message}"
