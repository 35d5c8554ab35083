"""The manifest JSON Schema shipped in the package, and its errors phrased for people."""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "manifest.schema.json"


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def schema_digest() -> str:
    from modelbuild.store.hashing import digest_bytes

    return digest_bytes(SCHEMA_PATH.read_bytes())


@lru_cache(maxsize=1)
def _model_validator() -> Any:
    import jsonschema  # imported here: only a changed manifest needs validating

    model_schema = {"$ref": "#/$defs/model", "$defs": schema()["$defs"]}
    return jsonschema.Draft202012Validator(model_schema)


def model_errors(data: Any) -> Iterator[tuple[str, str]]:
    """Yield (field path, message) for every schema violation of one model."""
    errors = sorted(_model_validator().iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
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
