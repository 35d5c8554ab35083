"""Input shapes: fixed, ranged (bounded or unbounded) and enumerated, without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dim:
    min: int
    max: int | None  # None: unbounded
    default: int
    name: str | None = None  # a dimension named under ``dims:`` (or inline): one symbol wherever it is used

    @property
    def flexible(self) -> bool:
        return self.max is None or self.min != self.max

    @classmethod
    def parse(cls, raw: Any) -> "Dim":
        if isinstance(raw, int):
            return cls(raw, raw, raw)
        if isinstance(raw, str):
            # A name resolve_named could not resolve: the manifest check reports it before
            # anything is built, so only defaults computed before that check see this.
            return cls(1, 1, 1, raw)
        low = raw["min"]
        return cls(low, raw.get("max"), raw.get("default", low), raw.get("name"))

    def symbol(self, inp: dict[str, Any], axis: int) -> str:
        """The dimension's name in exported programs: torch.export's ``Dim``, the ONNX
        ``dim_param``. A named dimension keeps its name, so inputs that share it share one
        symbol; an unnamed one is ``<input>_<axis>``."""
        return self.name or f"{inp['name']}_{axis}"


NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"  # a dimension name: an identifier, as torch.export and ONNX need


def resolve_named(data: dict[str, Any]) -> None:
    """Replace each reference to a ``dims:`` entry in an input's shape by the entry itself,
    named, so that everything downstream (samples, keys, converters) sees one kind of
    dimension. A reference to an undeclared name is left for the manifest check to report."""
    declared = data.get("dims") or {}
    for inp in data.get("inputs", []):
        if "shape" not in inp:
            continue
        shape = []
        for raw in inp["shape"]:
            if isinstance(raw, str) and isinstance(declared.get(raw), dict):
                entry = declared[raw]
                raw = {"min": entry["min"], "max": entry.get("max"), "default": entry.get("default", entry["min"]), "name": raw}
                if raw["max"] is None:
                    del raw["max"]
            shape.append(raw)
        inp["shape"] = shape


def dims(inp: dict[str, Any]) -> list[Dim]:
    """The ranged view of an input (enumerated shapes become per-axis ranges)."""
    if "shapes" in inp:
        shapes = inp["shapes"]
        default = inp.get("default_shape", shapes[0])
        return [Dim(min(s[i] for s in shapes), max(s[i] for s in shapes), default[i]) for i in range(len(default))]
    return [Dim.parse(d) for d in inp["shape"]]


def shape_at(inp: dict[str, Any], which: str) -> list[int]:
    """The concrete shape of an input for ``default``, ``min`` or ``max``.

    Enumerated inputs pick the enumerated shape (never a mix of axes that was not declared);
    an unbounded axis's ``max`` is its default, since there is no largest size to try.
    """
    if "shapes" in inp:
        shapes = [list(s) for s in inp["shapes"]]
        if which == "default":
            return list(inp.get("default_shape", shapes[0]))
        key = sum if which == "max" else (lambda s: -sum(s))
        return max(shapes, key=key)
    result = []
    for d in dims(inp):
        if which == "min":
            result.append(d.min)
        elif which == "max":
            result.append(d.max if d.max is not None else d.default)
        else:
            result.append(d.default)
    return result


def is_flexible(inp: dict[str, Any]) -> bool:
    return "shapes" in inp or any(d.flexible for d in dims(inp))


def has_unbounded(inp: dict[str, Any]) -> bool:
    return "shapes" not in inp and any(d.max is None for d in dims(inp))


def fixed_shapes(inputs: list[dict[str, Any]]) -> dict[str, list[int]] | None:
    """Every input's shape by name when none is flexible, else None."""
    if any(is_flexible(i) for i in inputs):
        return None
    return {i["name"]: shape_at(i, "default") for i in inputs}
