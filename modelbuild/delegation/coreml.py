"""The Core ML view, from the package alone (Linux cannot ask a device): the operations in
the program that commonly keep a model, or part of it, off the Neural Engine, so a user sees
them before trying a device. The list is static and deliberately short: what Apple's
coremltools documentation and the community's Neural Engine notes
(github.com/hollance/neural-engine) describe, not a guess at Apple's private scheduler.

- The Neural Engine computes in float16: operations kept in float32 (``precision: float32``,
  ``float32_modules``) run on the CPU or GPU.
- Inputs with a range of sizes (RangeDim) are not planned for the Neural Engine; enumerated
  shapes are (coremltools' "Flexible Input Shapes" guide).
- Control flow, recurrent layers, dynamic gathers and scatters, sorting and random numbers
  fall back to the CPU (hollance/neural-engine, "Unsupported layers").
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from modelbuild.delegation.report import Delegation, LeftOut

# op type -> why it commonly leaves the Neural Engine
OFF_NEURAL_ENGINE = {
    "while_loop": "control flow",
    "cond": "control flow",
    "lstm": "recurrent layer",
    "gru": "recurrent layer",
    "rnn": "recurrent layer",
    "gather": "dynamic gather",
    "gather_nd": "dynamic gather",
    "gather_along_axis": "dynamic gather",
    "scatter": "scatter",
    "scatter_nd": "scatter",
    "scatter_along_axis": "scatter",
    "non_zero": "data-dependent shape",
    "argsort": "sorting",
    "topk": "sorting",
    "random_bernoulli": "random numbers",
    "random_categorical": "random numbers",
    "random_normal": "random numbers",
    "random_uniform": "random numbers",
    "cumsum": "scan",
    "einsum": "general einsum",
}
# NeuralNetwork layer kinds (the older format) with the same reasons
NN_OFF_NEURAL_ENGINE = {
    "uniDirectionalLSTM": "recurrent layer",
    "biDirectionalLSTM": "recurrent layer",
    "gru": "recurrent layer",
    "simpleRecurrent": "recurrent layer",
    "gather": "dynamic gather",
    "gatherND": "dynamic gather",
    "gatherAlongAxis": "dynamic gather",
    "scatter": "scatter",
    "scatterND": "scatter",
    "topK": "sorting",
    "argSort": "sorting",
    "custom": "custom layer",
    "loop": "control flow",
    "branch": "control flow",
}


def coreml_delegation(ops: list[tuple[str, str]], float32_ops: int, range_inputs: list[str]) -> Delegation:
    """``ops``: (kind, dtype) of every operation in the main function; ``float32_ops``: how many
    compute in float32; ``range_inputs``: inputs with a range of sizes."""
    report = Delegation("coreml", "the Neural Engine (static estimate)")
    counts = Counter(kind for kind, _ in ops)
    away = {kind: count for kind, count in counts.items() if kind in OFF_NEURAL_ENGINE or kind in NN_OFF_NEURAL_ENGINE}
    report.ops_total = len(ops)
    report.ops_delegated = report.ops_total - sum(away.values()) - float32_ops
    report.ops_delegated = max(report.ops_delegated, 0)
    report.left_out = [
        LeftOut(kind, count, [OFF_NEURAL_ENGINE.get(kind) or NN_OFF_NEURAL_ENGINE[kind]]) for kind, count in sorted(away.items(), key=lambda item: -item[1])
    ]
    if float32_ops:
        report.left_out.append(LeftOut("float32 operations", float32_ops, ["the Neural Engine computes in float16"]))
    if range_inputs:
        report.notes.append(
            f"input(s) {', '.join(range_inputs)} take a range of sizes: Core ML does not plan the Neural Engine for those; "
            "enumerated shapes (a list of sizes) keep it"
        )
    return report


def describe_ops(spec: Any) -> tuple[list[tuple[str, str]], int]:
    """(kind, output dtype) of each operation of a Model protobuf's main program, and how many
    compute in float32 (ML program; constants and casts aside); NeuralNetwork layers by kind."""
    kind = spec.WhichOneof("Type")
    if kind == "mlProgram":
        ops: list[tuple[str, str]] = []
        float32 = 0
        for function in spec.mlProgram.functions.values():
            block = [op for op in function.block_specializations[function.opset].operations if op.type != "const"]
            # A float16 program starts with the inputs' preprocessing in float32, then casts:
            # only float32 after the first cast is computation kept in float32 on purpose.
            first_cast = next((i for i, op in enumerate(block) if op.type == "cast"), None)
            for index, op in enumerate(block):
                dtype = op.outputs[0].type.tensorType.dataType if op.outputs else 0
                ops.append((op.type, "float32" if dtype == _FLOAT32 else str(dtype)))
                if dtype == _FLOAT32 and op.type != "cast" and (first_cast is None or index > first_cast):
                    float32 += 1
        return ops, float32
    if kind in ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor"):
        return [(layer.WhichOneof("layer") or "", "") for layer in getattr(spec, kind).layers], 0
    return [], 0


def range_inputs(spec: Any) -> list[str]:
    """Inputs that take a range of sizes (not a fixed size, not an enumerated list)."""
    found = []
    for feature in spec.description.input:
        kind = feature.type.WhichOneof("Type")
        if kind == "multiArrayType":
            ranges = feature.type.multiArrayType.shapeRange.sizeRanges
            if any(r.lowerBound != r.upperBound for r in ranges):
                found.append(feature.name)
        elif kind == "imageType":
            size = feature.type.imageType.imageSizeRange
            if size.widthRange.lowerBound != size.widthRange.upperBound or size.heightRange.lowerBound != size.heightRange.upperBound:
                found.append(feature.name)
    return found


def package_delegation(spec: Any) -> Delegation:
    ops, float32 = describe_ops(spec)
    return coreml_delegation(ops, float32, range_inputs(spec))


_FLOAT32 = 11  # MIL.proto DataType FLOAT32
