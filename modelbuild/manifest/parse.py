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
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError([problem(Location(display), f"invalid TOML: {exc}")]) from None
        check_text(table, {}, display)
        return table, {}
    try:
        _check_depth(text, display)
        loader = Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_expansion(node, display)
                _check_duplicate_keys(node, display)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
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
    check_text(data, lines, display)
    return data, lines


def check_no_nul(value: Any, where: Location) -> None:
    """A NUL character ends a path for the operating system: no field may hold one."""
    if isinstance(value, str) and "\x00" in value:
        raise ManifestError([problem(where, f"expected text without a NUL character, got {value!r}")])


def check_text(data: Any, lines: Lines, display: str) -> None:
    """No key or text value anywhere in ``data`` holds a NUL character."""
    stack = [("", data)]
    while stack:
        field, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{field}.{key}" if field else str(key)
                check_no_nul(str(key), Location(display, lines.get(f"{child}#key"), child))
                stack.append((child, item))
        elif isinstance(value, list):
            stack += [(f"{field}[{index}]", item) for index, item in enumerate(value)]
        else:
            check_no_nul(value, Location(display, lines.get(field), field))


MAX_DEPTH = 64  # a manifest nests a few levels; the composer recurses per level (deep files crash it)
MAX_VALUES = 100_000  # a model manifest has hundreds; aliases must not make it billions


def _check_depth(text: str, display: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH from the event stream (iterative), before the
    composer, which recurses per level, ever sees the document."""
    depth = 0
    for event in yaml.parse(text, Loader=Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ManifestError(
                    [problem(Location(display, event.start_mark.line + 1), f"invalid YAML: nested deeper than {MAX_DEPTH} levels; a manifest needs a few")]
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_expansion(root: yaml.Node, display: str) -> None:
    """Refuse a document whose aliases expand past MAX_VALUES values ("billion laughs"): the
    composed tree shares aliased nodes, so counting with a memo costs only its real size,
    while anything that walks the expanded data (merging, hashing) would not finish."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ManifestError(
                [problem(Location(display, node.start_mark.line + 1), "invalid YAML: an alias refers to a node that contains it (a recursive document)")]
            )
        active.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_VALUES:
                raise ManifestError(
                    [
                        problem(
                            Location(display, node.start_mark.line + 1),
                            f"invalid YAML: aliases expand this document to more than {MAX_VALUES} values; "
                            "a manifest needs far fewer (is it a 'billion laughs' document?)",
                        )
                    ]
                )
        active.discard(key)
        sizes[key] = total
        return total

    size(root)


def _kind(node: yaml.Node) -> str:
    """What YAML read a key as, in words: ``number`` for ``1:``, ``boolean`` for ``true:``."""
    if not isinstance(node, yaml.ScalarNode):
        return node.id
    tag = node.tag.rsplit(":", 1)[-1]
    return {"int": "number", "float": "number", "bool": "boolean"}.get(tag, tag)


def _check_duplicate_keys(node: yaml.Node, display: str) -> None:
    """A key given twice in one mapping is an error, as TOML makes it: YAML would silently keep
    the last one, and a reader of the file may well believe the first. So is a key that is not
    text."""
    seen_nodes: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in seen_nodes:
            continue
        seen_nodes.add(id(current))
        if isinstance(current, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in current.value:
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key != "<<" and (not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str"):
                    # Every manifest field and argument name is text; YAML reads `1:`, `true:` or
                    # `null:` as a number, a boolean, nothing.
                    shown = key if isinstance(key_node, yaml.ScalarNode) else "a " + key_node.id
                    raise ManifestError([problem(Location(display, line), f"expected a text key, got {shown} (a {_kind(key_node)}); quote it: '{shown}'")])
                if isinstance(key_node, yaml.ScalarNode) and key in first and key != "<<":
                    raise ManifestError(
                        [problem(Location(display, line, key), f"duplicate key {key!r} (first given on line {first[key]}); give each key once")]
                    )
                first.setdefault(key, line)
                stack += [key_node, value_node]
        elif isinstance(current, yaml.SequenceNode):
            stack += current.value


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
