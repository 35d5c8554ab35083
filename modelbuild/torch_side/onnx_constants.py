"""Weights-only rebuilds of an ONNX file without translating the model again.

``torch.onnx.export`` is three steps: capture (torch.export), translation to ONNX
(decompositions, then operator by operator: the slow part, 2–4 s for the small GPT example)
and the onnxscript optimizer (constant folding, such as each Linear weight transposed into its
MatMul's initializer, and equal constants stored once). The translation reads no weight value:
it names each weight as an initializer and fills the values in afterwards. So the stage keeps
the translated graph *before* the optimizer and without the weights' bytes
(``unoptimized.onnx``), and always writes its file the same way, a full export or not: that
graph, the program's weights filled in by name, then the exporter's own optimizer. A
weights-only rebuild fills the previous graph with the new weights and runs the same optimizer,
so every fold and every merge of equal constants is made as a full export makes it.

A patch is refused, and the stage exports in full, whenever the graph itself could differ:

- the exported program's graph, signature, shapes, source lines or any stage setting differ
  (the fingerprint, as for ExecuTorch programs);
- a tensor that the translation did not take as an initializer by its own name changed value;
- the translation stored a weight other than byte for byte (the record is refused when it is
  made).

Equal bytes to a full export are proven for every example by tests/stages/test_onnx_patch.py;
the verify stage compares the file with PyTorch as it compares every artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelbuild.torch_side.program_identity import fingerprint, read_by_graph, refusal, value_digests
from modelbuild.torch_side.program_identity import tensors as program_tensors

RECORD = "constants.json"
STRUCTURE = "unoptimized.onnx"
FORMAT = 1


class NotPatchable(Exception):
    """Why the previous ONNX graph cannot take this program's weights: the stage exports in full."""


def capture(module: Any, example: tuple[Any, ...], shapes: Any) -> Any | None:
    """The exported program that ``torch.onnx.export`` would capture from ``module``: its own
    capture strategies, in its order. None when none works (the exporter then says why)."""
    try:
        from torch.onnx._internal.exporter import _capture_strategies
    except ImportError:  # another torch: the exporter captures by itself, and nothing is patched
        return None
    for strategy_class in _capture_strategies.CAPTURE_STRATEGIES:
        result = strategy_class(verbose=False, dump=False)(module, example, None, dynamic_shapes=shapes)
        if result.success and result.exported_program is not None:
            return result.exported_program
    return None


def learn(translated: Any, program: Any, decomposed: Any, settings: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(the translated graph without the weights' bytes, its record), or NotPatchable.

    Every initializer named after a tensor of ``program`` must hold exactly that tensor's
    bytes: then filling in by name gives back what the translation made, and a new program's
    weights give what its translation would make. ``decomposed`` is the program the
    translation read (the exporter's decompositions of ``program``): a tensor it reads by
    attribute is copied into the graph under another name, so it makes the graph unpatchable,
    and so does any other copy of a weight's bytes."""
    import onnx

    _no_tensor_attributes(decomposed)
    structure = onnx.ModelProto()
    structure.CopyFrom(translated)
    values = program_tensors(program)
    taken = []
    for initializer in structure.graph.initializer:
        if initializer.name not in values:
            continue  # made by the translation from the graph (a shape, a literal): kept as it is
        if initializer.HasField("data_location") and initializer.data_location == onnx.TensorProto.EXTERNAL:
            raise NotPatchable(f"initializer {initializer.name} is stored outside the file")
        if not initializer.HasField("raw_data") or initializer.raw_data != _onnx_bytes(values[initializer.name]):
            raise NotPatchable(f"initializer {initializer.name} does not hold the bytes of the program's tensor {initializer.name}")
        initializer.ClearField("raw_data")
        taken.append(initializer.name)
    _no_stray_copies(structure, program)
    digests = value_digests(program)
    # What the translation read (after the exporter's decompositions, which drop a head whose
    # output nothing uses) but stored under no name of its own must keep its value.
    fixed = {name: digests[name] for name in sorted(read_by_graph(decomposed)) if name not in taken and name in digests}
    return structure, {"format": FORMAT, "fingerprint": fingerprint(program, settings), "weights": sorted(taken), "fixed": fixed}


def _no_tensor_attributes(decomposed: Any) -> None:
    """The translation materialises a tensor read by ``get_attr`` as a constant of its own."""
    import torch

    for module in decomposed.graph_module.modules():
        graph = getattr(module, "graph", None)
        for node in graph.nodes if isinstance(graph, torch.fx.Graph) else ():
            if node.op == "get_attr" and isinstance(_attribute(module, str(node.target)), torch.Tensor):
                raise NotPatchable(f"the graph reads the tensor {node.target} as an attribute, which the translation copies")


def _attribute(module: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        module = getattr(module, part, None)
    return module


def _no_stray_copies(structure: Any, program: Any) -> None:
    """No constant besides the named initializers holds a weight's bytes: a copy under
    another name would keep the old value in a patch."""
    import hashlib

    import onnx
    from onnx import numpy_helper

    weights = {hashlib.sha256(_onnx_bytes(value)).hexdigest() for value in program_tensors(program).values() if hasattr(value, "numel") and value.numel() > 1}
    graphs = [structure.graph, *(function for function in structure.functions)]
    while graphs:
        graph = graphs.pop()
        stored = [t for t in getattr(graph, "initializer", ()) if t.HasField("raw_data") or t.float_data or t.int64_data or t.int32_data or t.double_data]
        for node in graph.node:
            stored += [a.t for a in node.attribute if a.type == onnx.AttributeProto.TENSOR]
            graphs += [a.g for a in node.attribute if a.HasField("g")] + [g for a in node.attribute for g in a.graphs]
        for tensor in stored:
            data = numpy_helper.to_array(tensor)
            if data.size > 1 and hashlib.sha256(data.tobytes()).hexdigest() in weights:
                raise NotPatchable(f"constant {tensor.name or '(unnamed)'} holds a copy of a weight's bytes under another name")


def filled(structure: Any, program: Any, record: dict[str, Any]) -> Any:
    """The translated graph with ``program``'s weights in the initializers the record names."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(structure)
    values = program_tensors(program)
    wanted = set(record["weights"])
    for initializer in model.graph.initializer:
        if initializer.name in wanted:
            initializer.raw_data = _onnx_bytes(values[initializer.name])
            wanted.discard(initializer.name)
    if wanted:
        raise NotPatchable(f"the graph has no initializer {sorted(wanted)[0]}")
    return model


def optimize(model: Any) -> Any:
    """The exporter's optimizer (``ONNXProgram.optimize``) on a translated graph."""
    import onnx_ir as ir
    import torch

    onnx_program = torch.onnx.ONNXProgram(ir.serde.deserialize_model(model), None)
    onnx_program.optimize()
    return onnx_program.model_proto


def patch(previous: Path, program: Any, settings: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """(the previous translated graph with this program's weights, that graph without them,
    its record); NotPatchable when a full export could translate anything else."""
    import onnx

    try:
        record = json.loads((previous / RECORD).read_text())
        structure = onnx.load_model_from_string((previous / STRUCTURE).read_bytes()) if "refused" not in record else None
    except Exception as exc:  # noqa: BLE001 - a missing file, broken JSON, a truncated protobuf (DecodeError)
        raise NotPatchable(f"no usable previous graph: {exc}") from None
    why = refusal(record, FORMAT, program, settings, "graph", "is not one of the graph's initializers")
    if why is not None:
        raise NotPatchable(why)
    # The checks a full export makes on its record, made again on the new weights: one whose
    # bytes now equal a constant of the graph makes a full export refuse its record, and the
    # patch must write what a full export writes.
    _no_stray_copies(structure, program)
    return filled(structure, program, record), structure, record


def _onnx_bytes(tensor: Any) -> bytes:
    """The bytes the exporter stores for a weight (complex numbers as pairs of reals)."""
    import torch
    from torch.onnx._internal.exporter._core import TorchTensor

    if tensor.dtype.is_complex:
        tensor = torch.view_as_real(tensor)
    return bytes(TorchTensor(tensor).tobytes())


def write(out: Path, structure: Any | None, record: dict[str, Any]) -> None:
    if structure is not None:
        (out / STRUCTURE).write_bytes(structure.SerializeToString(deterministic=True))
    (out / RECORD).write_text(json.dumps(record, sort_keys=True, indent=1) + "\n")
