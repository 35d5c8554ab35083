"""The ExecuTorch view: which operators of the lowered edge program run inside a delegate
(XNNPACK, Core ML) and which are left to the portable kernels, with an estimate of the FLOPs
on each side (convolutions and matrix products by their shapes, everything else by its output
size) and the source line of each left-out operator."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from modelbuild.delegation.report import Delegation, LeftOut

_OWN = str(Path(__file__).resolve().parents[1]) + "/"
_SKIP = {"getitem", "executorch_call_delegate", "alloc", "sym_size"}
_LINE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


def executorch_delegation(edge_program: Any, backend: str) -> Delegation:
    """``edge_program``: the ExportedProgram after ``to_edge_transform_and_lower``."""
    module = edge_program.graph_module
    report = Delegation("executorch", backend)
    left: Counter[str] = Counter()
    where: dict[str, list[str]] = defaultdict(list)
    for node in module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module"):
            report.partitions += 1
            for inner in getattr(module, node.target).original_module.graph.nodes:
                if _is_op(inner):
                    report.ops_delegated += 1
                    report.ops_total += 1
                    flops = estimate_flops(inner)
                    report.flops_delegated += flops
                    report.flops_total += flops
        elif _is_op(node) and not _planned_as_view(node):
            name = op_name(node)
            report.ops_total += 1
            report.flops_total += estimate_flops(node)
            left[name] += 1
            line = source_line(node)
            if line and line not in where[name] and len(where[name]) < 3:
                where[name].append(line)
    report.left_out = [LeftOut(name, count, where[name]) for name, count in left.most_common()]
    return report


def _is_op(node: Any) -> bool:
    """A tensor operator: not the graph's plumbing, and not Python arithmetic on symbolic sizes
    (``operator.mul`` of two SymInts at flexible shapes), which the runtime's shape code does."""
    if node.op != "call_function" or getattr(node.target, "__module__", None) in ("_operator", "operator"):
        return False
    return not any(word in op_name(node) for word in _SKIP)


def _planned_as_view(node: Any) -> bool:
    """ExecuTorch turns a reshape outside the delegate into a view of its input when it does
    not feed the output (ReplaceViewCopyWithViewPass in ``to_executorch``): no kernel runs."""
    return op_name(node) == "aten.view_copy" and all(user.op != "output" for user in node.users)


def op_name(node: Any) -> str:
    target = node.target
    name = getattr(target, "__name__", None) or str(target)
    overload = getattr(target, "_overloadname", None)
    schema = getattr(target, "_schema", None)
    if schema is not None:
        name = schema.name.replace("::", ".") + (f".{overload}" if overload and overload != "default" else "")
    return name


def _size(dim: Any) -> int:
    """A dimension as a number without asking the shape environment: ``int()`` of a symbolic
    size installs a guard that specialises it, and the lowered program would then be planned
    for that one size (measured: the GPT example failed at its min shape)."""
    if isinstance(dim, int):
        return dim
    hint = getattr(getattr(dim, "node", None), "hint", None)
    return hint if isinstance(hint, int) else 1


def _numel(value: Any) -> int:
    shape = getattr(value, "shape", None)
    return math.prod(_size(s) for s in shape) if shape is not None else 0


def estimate_flops(node: Any) -> float:
    """Multiply-adds count two; elementwise work counts one per output element."""
    out = node.meta.get("val")
    if isinstance(out, (list, tuple)):
        out = out[0] if out else None
    elements = _numel(out)
    name = op_name(node)
    args = [a.meta.get("val") if hasattr(a, "meta") else None for a in node.args]
    if "convolution" in name and len(args) > 1 and args[1] is not None:
        weight = args[1].shape
        return 2.0 * elements * _size(weight[1]) * math.prod(_size(s) for s in weight[2:])
    if any(word in name for word in ("addmm", ".mm", "linear", "bmm", "matmul")):
        source = args[1] if "addmm" in name else args[0]
        if source is not None and getattr(source, "shape", None) is not None and len(source.shape):
            return 2.0 * elements * _size(source.shape[-1])
    return float(elements)


def source_line(node: Any) -> str | None:
    """Where this operator comes from: the innermost module (its path and class, which names
    the layer even when torch's own code made the operator) and the user's source line (the
    last frame outside torch and site-packages, relative to the build's snapshot tree)."""
    stack = node.meta.get("nn_module_stack") or {}
    module = ""
    if stack:
        path, kind = list(stack.values())[-1]
        name = getattr(kind, "__name__", None) or str(kind).rsplit(".", 1)[-1].rstrip("'>")
        module = f"{_module_path(path)} ({name})"
    line = None
    for match in _LINE.finditer(node.meta.get("stack_trace") or ""):
        path = match.group("file")
        if "site-packages" in path or "/torch/" in path or path.startswith((_OWN, "<")):  # torch's, modelbuild's or generated code
            continue
        line = f"{path.split('/tree/', 1)[-1]}:{match.group('line')}"
    return ", ".join(part for part in (module, line) if part) or None


def _module_path(path: str) -> str:
    """``L['self'].net.3.body._modules['0']`` style paths as ``net.3.body.0``."""
    cleaned = re.sub(r"L\['self'\]\.?|_modules\['([^']+)'\]|\[(\d+)\]", lambda m: m.group(1) or m.group(2) or "", path)
    return re.sub(r"\.{2,}", ".", cleaned).strip(".") or "(model)"
