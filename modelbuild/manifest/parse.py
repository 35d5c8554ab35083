"""Parse YAML and TOML into plain data plus a map from field path to line number.

YAML keeps positions (we compose the node tree and walk it); TOML through the standard
``tomllib`` does not, so TOML problems name the file and field path only: a line number we
would have to guess is worse than none.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from modelbuild.errors import Location, ManifestError, problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Lines = dict[str, int]


def parse_file(path: Path, display: str) -> tuple[Any, Lines]:
    """Return (data, lines) for a manifest file, or raise ManifestError naming the syntax fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([problem(Location(display), f"cannot read the manifest: {exc}")]) from None
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text), {}
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError([problem(Location(display), f"invalid TOML: {exc}")]) from None
    try:
        node = yaml.compose(text, Loader=Loader)
        data = yaml.load(text, Loader=Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{what} ({context})" if context else what
        raise ManifestError([problem(Location(display, line), f"invalid YAML: {detail}")]) from None
    lines: Lines = {}
    if node is not None:
        _walk(node, "", lines)
    return data, lines


def _walk(node: yaml.Node, path: str, lines: Lines) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            _walk(value_node, child, lines)
            # A problem with the key itself (unknown field) points at the key's line.
            lines.setdefault(f"{child}#key", key_node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, f"{path}[{index}]", lines)
