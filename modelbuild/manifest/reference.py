"""``docs/manifest.md``: the manifest reference, generated from the JSON Schema that validates
manifests (``modelbuild schema``) and from the built-in defaults, so the page cannot say
something the checker does not do. A test keeps the committed page equal to ``render()``;
``python -m modelbuild.manifest.reference`` rewrites it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parents[2] / "docs" / "manifest.md"

INTRO = """\
# Manifest reference

Generated from the manifest's JSON Schema (`modelbuild schema`) and modelbuild's built-in
defaults by `python -m modelbuild.manifest.reference`; a test fails when this page and the
schema disagree. A manifest is YAML or TOML and holds one model, or a top-level `models:` list
of models. Relative paths are relative to the manifest's folder. Project settings
(`modelbuild.toml` or `[tool.modelbuild]` in `pyproject.toml`: `cache_dir`, `out_dir`, `jobs`,
`[defaults]` deep-merged under every manifest, `[workers]` for warm workers) are described in
the README; the `[remote]` table (a shared cache) in docs/team.md.

Editors validate and complete manifests with the schema: put
`# yaml-language-server: $schema=<path to modelbuild/schema/manifest.schema.json>` on the
first line. "Default" is what modelbuild fills in when the field is left out (writing the
default builds exactly the same thing).
"""

SECTIONS = [
    ("The model", "#/$defs/model", "", {"inputs", "outputs", "targets"}),
    ("Inputs (`inputs[]`)", "#/$defs/input", "inputs[]", set()),
    ("Outputs (`outputs[]`)", "#/$defs/output", "outputs[]", set()),
    ("Targets (`targets.<name>`)", "#/$defs/model/properties/targets", "targets", set()),
]


def render() -> str:
    from modelbuild.manifest.schema import schema as manifest_schema

    schema = manifest_schema()
    defaults = _defaults()
    lines = [INTRO]
    for title, pointer, prefix, skip in SECTIONS:
        lines += ["", f"## {title}", "", "| field | type | default | description | example |", "| --- | --- | --- | --- | --- |"]
        for path, node in _fields(schema, _resolve(schema, {"$ref": pointer}), prefix, skip):
            lines.append(f"| `{path}` | {_type(schema, node)} | {_default(defaults, path)} | {_cell(node.get('description', ''))} | {_example(schema, node)} |")
    lines += ["", "## Named dimensions, shape choices", "", _dim_text(schema), ""]
    return "\n".join(lines)


def _fields(schema: dict[str, Any], node: dict[str, Any], prefix: str, skip: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every field under ``node`` as (dotted path, its schema), parents before children."""
    found = []
    for name, child in node.get("properties", {}).items():
        if name in skip:
            continue
        path = f"{prefix}.{name}" if prefix else name
        resolved = _resolve(schema, child)
        found.append((path, resolved))
        if str(child.get("$ref", "")).startswith("#/$defs/model/properties/"):
            continue  # the same table as the model's own (a variant's targets): listed there
        for nested, suffix in _objects(schema, resolved):
            if nested.get("properties"):
                found += _fields(schema, nested, path + suffix, set())
            elif isinstance(nested.get("additionalProperties"), dict) and nested["additionalProperties"].get("properties"):
                found += _fields(schema, _resolve(schema, nested["additionalProperties"]), f"{path}.<name>", set())
    return found


def _objects(schema: dict[str, Any], node: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """The object schemas a field can be (itself, its oneOf branches, a list's items), each with
    the suffix its fields' paths take ("[]" for a list's items)."""
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        items = _resolve(schema, node["items"])
        return [(items, "[]")] if items.get("properties") else []
    options = [node] + [_resolve(schema, branch) for branch in node.get("oneOf", [])]
    return [(o, "") for o in options if o.get("properties") or isinstance(o.get("additionalProperties"), dict)]


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type(schema: dict[str, Any], node: dict[str, Any]) -> str:
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    if "oneOf" in node:
        return " or ".join(_type(schema, _resolve(schema, branch)) for branch in node["oneOf"])
    kind = node.get("type", "any")
    if isinstance(kind, list):
        kind = " or ".join(k for k in kind if k != "null")
    if kind == "array":
        items = _resolve(schema, node.get("items", {}))
        inner = "object" if items.get("properties") else _type(schema, items)
        return f"list of {inner}"
    if kind in ("integer", "number"):
        low, high = node.get("minimum"), node.get("maximum")
        if low is not None and high is not None:
            return f"{kind} {low}–{high}"
        if low is not None:
            return f"{kind} ≥ {low}"
    if kind == "string" and "pattern" in node:
        return "string"
    return kind


def _defaults() -> dict[str, Any]:
    """The built-in defaults, read off a minimal manifest resolved with every target on."""
    from modelbuild.manifest.defaults import apply_defaults
    from modelbuild.targets import TARGETS

    model = {"name": "m", "source": {"factory": "m:build"}, "inputs": [{"name": "x", "shape": [1]}], "targets": {t: {} for t in TARGETS.names()}}
    return apply_defaults(model)


GIVEN = {"name", "source.factory", "inputs[].name", "inputs[].shape"}  # set by the minimal manifest, not defaults


def _default(defaults: dict[str, Any], path: str) -> str:
    if path in GIVEN:
        return ""
    node: Any = defaults
    for part in path.replace("[]", ".0").split("."):
        if part == "<name>" or not isinstance(node, (dict, list)):
            return ""
        if isinstance(node, list):
            node = node[int(part)] if part.isdigit() and int(part) < len(node) else None
        else:
            node = node.get(part)
        if node is None:
            return ""
    if isinstance(node, dict) and node:
        return "see fields"
    return f"`{_short(node)}`"


def _example(schema: dict[str, Any], node: dict[str, Any]) -> str:
    if node.get("examples"):
        return f"`{_short(node['examples'][0])}`"
    if "enum" in node:
        return f"`{_short(node['enum'][-1])}`"
    return ""


def _short(value: Any) -> str:
    text = json.dumps(value, separators=(", ", ": ")) if not isinstance(value, str) else value
    return text.replace("|", "\\|")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _dim_text(schema: dict[str, Any]) -> str:
    dim = schema["$defs"]["dim"]
    choice = schema["$defs"]["shape_choice"]
    return (
        f"A dimension in `inputs[].shape` is {dim['x-expected']}. "
        "A dimension declared under `dims:` (for example `dims: {seq: {min: 1, max: 128, default: 32}}`) is written by its "
        "name in every input that shares it; inputs that use one name get one size everywhere: one `torch.export.Dim`, one "
        "ONNX axis name, one Core ML range. An inline dimension may carry `name:` too.\n\n"
        f"`validate.shapes` and `benchmark.shapes` take {choice['description']}."
    )


if __name__ == "__main__":
    PAGE.write_text(render(), encoding="utf-8")
    print(f"wrote {PAGE}")
