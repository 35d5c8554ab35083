"""Where each op of a converted ML program came from in the PyTorch model.

coremltools records scopes on every MIL op while converting (the TorchScript module path and
type, or torch.export's stack trace); they do not survive in the package. The conversion
writes them to ``ops.json`` beside it, so a mismatch found later (``mil.explain``) can name
the torch module or source line behind an op.
"""

from __future__ import annotations

from typing import Any


def op_origins(mlmodel: Any) -> dict[str, dict[str, str]]:
    program = getattr(mlmodel, "_mil_program", None)
    if program is None:
        return {}
    found: dict[str, dict[str, str]] = {}

    def walk(block: Any) -> None:
        for op in block.operations:
            entry = _origin(getattr(op, "scopes", {}) or {})
            if entry:
                found[op.name] = entry
            for inner in op.blocks:
                walk(inner)

    for function in program.functions.values():
        walk(function)
    return found


def inside_modules(op: Any, modules: list[str]) -> bool:
    """Whether a MIL op was converted from one of ``modules`` (or a module inside one)."""
    path = _origin(getattr(op, "scopes", {}) or {}).get("module")
    return path is not None and any(path == m or path.startswith(m + ".") for m in modules)


def _origin(scopes: Any) -> dict[str, str]:
    by_name = {getattr(source, "name", str(source)): list(values) for source, values in scopes.items()}
    names, types = by_name.get("TORCHSCRIPT_MODULE_NAME", []), by_name.get("TORCHSCRIPT_MODULE_TYPE", [])
    entry: dict[str, str] = {}
    if names:
        entry["module"] = ".".join(str(n) for n in names[:-1])
    if types:
        entry["torch"] = str(types[-1])
        if len(types) > 1:
            entry["type"] = str(types[-2])
    trace = by_name.get("EXIR_STACK_TRACE", [])
    if trace and trace[0]:
        entry["source"] = str(trace[0]).strip().splitlines()[-1][:200]
    return entry
