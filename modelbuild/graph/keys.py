"""Stage keys: the digest of exactly what a stage reads, and why a key changed (as data).

The material is kept next to each record so ``plan`` can say *which* input changed.
"""

from __future__ import annotations

from typing import Any, Callable

from modelbuild.graph.node import StageNode
from modelbuild.report.reasons import UNSET, Reason, Why
from modelbuild.stages import STAGES
from modelbuild.store.hashing import digest_json


def toolchain_stage_names() -> list[str]:
    """Every stage a build can run: the registered ones and the verify/bench stages each
    target (and eager torch) derives."""
    from modelbuild.targets import TARGETS

    return [*STAGES.names(), "torch.bench", *(f"{t}.{kind}" for t in TARGETS.names() for kind in ("verify", "bench"))]


def toolchain() -> list[str]:
    """Every distribution some stage keys on (its ``tools``; verify and bench stages take their
    runtime's): what a release records, so its provenance names every tool that shaped it."""
    return sorted({tool for name in toolchain_stage_names() for tool in STAGES.get(name).tools})


def material(node: StageNode, upstream: dict[str, str], file_digest: Callable[[str], str]) -> dict[str, Any]:
    stage = STAGES.get(node.stage)
    return {
        # Outputs are shared across models when their inputs match, except an artifact,
        # whose file name is the model's.
        **({"model": node.model} if stage.artifacts else {}),
        "stage": node.stage,
        "implementation": stage.version,
        "params": node.params,
        "files": {label: file_digest(path) for label, path in sorted(node.files.items())},
        "inputs": {dep.split(":", 1)[1]: upstream[dep] for dep in node.deps},
        "tools": stage.tool_versions(),
    }


def key_of(material: dict[str, Any]) -> str:
    return digest_json(material)


def explain(old: dict[str, Any] | None, new: dict[str, Any]) -> list[Reason]:
    """Why a key changed, most specific first: files, fields, inputs, tools, implementation."""
    if old is None:
        return [Reason(Why.FIRST_BUILD)]
    reasons: list[Reason] = []
    for label in sorted(set(old.get("files", {})) | set(new["files"])):
        before, after = old.get("files", {}).get(label), new["files"].get(label)
        if before != after:
            reasons.append(Reason(Why.FILE, label, change="added" if before is None else "removed" if after is None else "changed"))
    reasons += [Reason(Why.FIELD, path, a, b) for path, a, b in _diff(old.get("params", {}), new["params"], "")]
    for dep in sorted(set(old.get("inputs", {})) | set(new["inputs"])):
        if old.get("inputs", {}).get(dep) != new["inputs"].get(dep):
            reasons.append(Reason(Why.INPUT, dep))
    for tool in sorted(set(old.get("tools", {})) | set(new["tools"])):
        if old.get("tools", {}).get(tool) != new["tools"].get(tool):
            reasons.append(Reason(Why.TOOL, tool, old.get("tools", {}).get(tool), new["tools"].get(tool)))
    if old.get("implementation") != new["implementation"]:
        reasons.append(Reason(Why.IMPLEMENTATION, new["stage"], old.get("implementation"), new["implementation"]))
    return reasons or [Reason(Why.MISSING)]


def _diff(a: Any, b: Any, path: str) -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            out += _diff(a.get(key, UNSET), b.get(key, UNSET), sub)
        return out
    if isinstance(a, list) and isinstance(b, list):
        return _diff_lists(a, b, path)
    return [] if a == b else [(path, a, b)]


def _diff_lists(a: list[Any], b: list[Any], path: str) -> list[tuple[str, Any, Any]]:
    """Lists by element, so a reason names what changed: named tables (inputs, outputs) by
    name (``inputs[attention_mask]``), others by position, with the elements added or removed
    at the end (``optimize[1]``); a list of plain values that only grew or shrank names the
    values themselves."""
    names_a, names_b = _names(a), _names(b)
    if names_a is not None and names_b is not None and names_a != names_b:
        by_a, by_b = dict(zip(names_a, a)), dict(zip(names_b, b))
        out = []
        for name in names_a + [n for n in names_b if n not in by_a]:
            out += _diff(by_a.get(name, UNSET), by_b.get(name, UNSET), f"{path}[{name}]")
        return out
    if len(a) != len(b) and all(isinstance(x, (str, int, float, bool)) for x in a + b):
        gone = [(f"{path}[{i}]", x, UNSET) for i, x in enumerate(a) if x not in b]
        new = [(f"{path}[{i}]", UNSET, x) for i, x in enumerate(b) if x not in a]
        if gone or new:
            return gone + new
    out = []
    for index in range(max(len(a), len(b))):
        out += _diff(a[index] if index < len(a) else UNSET, b[index] if index < len(b) else UNSET, f"{path}[{index}]")
    return out


def _names(items: list[Any]) -> list[str] | None:
    """The ``name`` of every element when each is a table with a distinct one, else None."""
    names = [x.get("name") for x in items if isinstance(x, dict)]
    strings = [n for n in names if isinstance(n, str)]
    if len(strings) != len(items) or len(set(strings)) != len(strings):
        return None
    return strings
