"""Where a float16 ML program loses its result: the op-level locator behind ``modelbuild
explain`` and the notes of a failed ``coreml.verify``.

The package runs twice in the Linux executor, once as it is and once as its float32 shadow
(the same ops and the same float16-rounded weights, float32 arithmetic: ``float32_shadow``).
Comparing every op's value between the two runs finds the first op that departs beyond a
tolerance, and every op whose float32 values leave float16's range (±65504), with the torch
module each came from (the conversion records each op's origin in ``ops.json``). The way out
is named: keep the modules those ops came from in float32 with
``targets.coreml.float32_modules``, or the whole program with ``precision: float32``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

FLOAT16_MAX = 65504.0


@dataclass(frozen=True)
class OpFinding:
    name: str  # the op's name in the package ("z_cast_fp16")
    op_type: str
    origin: str  # "module block.fc (Linear), torch op linear" from ops.json, or ""
    module: str  # "block.fc": what targets.coreml.float32_modules takes ("" when unknown)
    float16_range: tuple[float, float]
    float32_range: tuple[float, float]
    max_abs_error: float
    overflow: bool


@dataclass(frozen=True)
class Explanation:
    float16: bool  # whether the program computes in float16 at all
    first: OpFinding | None  # the first op whose value departs beyond the tolerance
    overflowing: list[OpFinding]  # every op whose float32 values leave float16's range

    def lines(self) -> list[str]:
        if not self.float16:
            return ["the package computes in float32: float16 is not the cause"]
        if self.first is None:
            return ["the float16 program stays within tolerance of its float32 shadow at every op"]
        first = self.first
        where = f" from {first.origin}" if first.origin else ""
        lines = [
            f"first op that departs: {first.op_type} {first.name!r}{where}: float16 values {_span(first.float16_range)}, "
            f"float32 values {_span(first.float32_range)}, max abs difference {first.max_abs_error:.3g}"
            + (" (float16 overflow: past ±65504)" if first.overflow else "")
        ]
        culprits = self.overflowing or [first]
        modules = sorted({f.module for f in culprits if f.module})
        count = f"{len(self.overflowing)} op(s) leave float16's range; " if self.overflowing else ""
        if modules and all(f.module for f in culprits):
            lines.append(
                f"{count}way out: targets.coreml.float32_modules: [{', '.join(modules)}] (their ops compute in float32), or targets.coreml.precision: float32"
            )
        else:
            lines.append(f"{count}way out: targets.coreml.precision: float32 (the ops' modules are not known for this capture)")
        return lines


def _span(bounds: tuple[float, float]) -> str:
    return f"{bounds[0]:.4g}..{bounds[1]:.4g}"


def _range(x: torch.Tensor) -> tuple[float, float]:
    finite = x[torch.isfinite(x)]
    low = float(finite.min()) if finite.numel() else float("nan")
    high = float(finite.max()) if finite.numel() else float("nan")
    if not torch.isfinite(x).all():
        low = float("-inf") if (x == float("-inf")).any() else low
        high = float("inf") if (x == float("inf")).any() or torch.isnan(x).any() else high
    return low, high


def locate(package: Path, feeds: dict[str, Any], rtol: float = 1e-2, atol: float = 1e-3) -> Explanation:
    """Run ``package`` on ``feeds`` as it is and as its float32 shadow; compare op by op."""
    from modelbuild.mil.args import float32_shadow

    runner = _runner(package)
    low = runner.run(feeds, keep=True)
    with float32_shadow():
        high = runner.run(feeds, keep=True)
    origins, modules = _origins(package)
    first: OpFinding | None = None
    overflowing: list[OpFinding] = []
    float16 = False
    for op in runner.function.operations:
        if op.op_type == "const" or op.op_type.startswith("constexpr_"):
            continue
        for var in op.outputs:
            a, b = low.get(var.name), high.get(var.name)
            if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.is_floating_point() and a.shape == b.shape):
                continue
            float16 = float16 or a.dtype == torch.float16
            if a.dtype != torch.float16 or a.numel() == 0:
                continue
            a64, b64 = a.double(), b.double()
            scale = float(b64[torch.isfinite(b64)].abs().max()) if torch.isfinite(b64).any() else 0.0
            overflow = scale > FLOAT16_MAX or bool((~torch.isfinite(a64) & torch.isfinite(b64)).any())
            difference = (a64 - b64).abs()
            error = float("inf") if not torch.isfinite(difference).all() else float(difference.max())
            finding = OpFinding(var.name, op.op_type, origins.get(op.name, ""), modules.get(op.name, ""), _range(a64), _range(b64), error, overflow)
            if overflow:
                overflowing.append(finding)
            if first is None and (overflow or error > atol + rtol * scale):
                first = finding
    return Explanation(float16, first, overflowing)


@lru_cache(maxsize=2)
def _runner(package: Path) -> Any:
    """One loaded program per package: ``explain`` runs it for every sample, twice each, and
    loading (the milproto reader, the weights) costs more than running."""
    from modelbuild.mil.program import ProgramRunner

    return ProgramRunner(package)


@lru_cache(maxsize=2)
def _origins(package: Path) -> tuple[dict[str, str], dict[str, str]]:
    """op name -> its origin in words, and op name -> its module path, from the ops.json the
    conversion wrote beside the package."""
    path = package.parent / "ops.json"
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        recorded = {}
    entries = {name: entry for name, entry in recorded.items() if isinstance(entry, dict)}
    return {n: describe_origin(e) for n, e in entries.items()}, {n: str(e.get("module", "")) for n, e in entries.items()}


def describe_origin(entry: dict[str, Any]) -> str:
    module, kind, torch_op = entry.get("module", ""), entry.get("type", ""), entry.get("torch", "")
    if not module and not torch_op:
        return ""
    text = f"module {module}" if module else "the top-level forward"
    if kind:
        text += f" ({kind})"
    return text + (f", torch op {torch_op}" if torch_op else "")


@dataclass(frozen=True)
class ModuleFinding:
    module: str  # "model.norm"
    op: str  # the last op converted from it, whose value is the module's output
    max_abs_error: float
    scale: float  # the largest magnitude of the module's PyTorch output


def compare_modules(package: Path, feeds: dict[str, Any], module_outputs: dict[str, torch.Tensor], rtol: float = 1e-3, atol: float = 1e-4) -> list[str]:
    """Where names map, the package against the PyTorch model itself: each torch module's
    output (``module_outputs``, by module path) against the value of the last op converted
    from that module. Returns lines naming the first module that departs (in program
    order), or saying that none does. Finds conversion errors that float16 does not explain."""
    runner = _runner(package)
    values = runner.run(feeds, keep=True)
    _words, modules = _origins(package)
    last: dict[str, str] = {}  # module path -> the name of the last op var converted from it
    for op in runner.function.operations:
        path = modules.get(op.name, "")
        if path and op.outputs and isinstance(values.get(op.outputs[0].name), torch.Tensor):
            last[path] = op.outputs[0].name
    order = {name: index for index, name in enumerate(values)}
    compared = 0
    for path, var in sorted(last.items(), key=lambda item: order.get(item[1], 0)):
        expected = module_outputs.get(path)
        got = values[var]
        if expected is None or not got.is_floating_point() or expected.numel() != got.numel():
            continue
        compared += 1
        want, have = expected.double().reshape(-1), got.double().reshape(-1)
        scale = float(want.abs().max()) if want.numel() else 0.0
        error = float((want - have).abs().max()) if want.numel() else 0.0
        if not error <= atol + rtol * scale:
            finding = ModuleFinding(path, var, error, scale)
            return [
                f"first torch module whose converted output departs from PyTorch: {finding.module} (op {finding.op!r}): "
                f"max abs difference {finding.max_abs_error:.3g} on values up to {finding.scale:.3g}; "
                "look at its conversion (a compat conversion, a plugin, or wrapper.replace for that module)"
            ]
    if not compared:
        return ["no torch module's output could be matched to an op of the package (the conversion kept no module scopes)"]
    return [f"all {compared} torch modules whose outputs map to ops of the package agree with PyTorch within tolerance"]


def torch_module_outputs(prepared: Any, example: list[Any]) -> dict[str, torch.Tensor]:
    """Every named submodule's output on ``example`` (the first tensor of a tuple output)."""
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in prepared.named_modules():
        if not name:
            continue

        def keep(_module: Any, _args: Any, result: Any, name: str = name) -> None:
            first = result[0] if isinstance(result, (tuple, list)) and result else result
            if isinstance(first, torch.Tensor):
                outputs[name] = first.detach()

        handles.append(module.register_forward_hook(keep))
    try:
        with torch.no_grad():
            prepared(*example)
    finally:
        for handle in handles:
            handle.remove()
    return outputs
