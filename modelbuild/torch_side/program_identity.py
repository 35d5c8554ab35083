"""Who an exported program is, apart from its weights' values: what both weights-only patches
(``pte_constants``, ``onnx_constants``) compare a new program against the one they patch.

Two programs with one fingerprint take the same path through a lowering or an exporter, so
their artifacts can differ only where the weights' bytes are stored.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any


def fingerprint(program: Any, settings: dict[str, Any]) -> str:
    """Everything about the exported program but its constant values: the graph, its
    signature and symbolic ranges, every node's source line, every tensor's name, dtype and
    shape, and the stage's settings. Two programs with one fingerprint lower alike."""
    metas = {name: _meta(value) for name, value in sorted(tensors(program).items())}
    material = {
        "code": program.graph_module.code,
        "signature": str(program.graph_signature),
        "ranges": sorted(str(item) for item in program.range_constraints.items()),
        "nodes": _nodes(program.graph),
        "tensors": metas,
        "settings": settings,
    }
    # The branches of torch.cond (and the bodies of while_loop, map, scan) are graphs of their
    # own, in submodules: a constant that came from the model's configuration can sit in one.
    # Only when there are any, so that a program without them keeps its fingerprint.
    subgraphs = _subgraphs(program.graph_module)
    if subgraphs:
        material["subgraphs"] = subgraphs
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _nodes(graph: Any) -> list[tuple[str, str, list[str]]]:
    return [(node.name, str(node.target), _frames(node.meta.get("stack_trace") or "")) for node in graph.nodes]


def _subgraphs(root: Any) -> dict[str, dict[str, Any]]:
    """Every graph module under the program's own, nested ones included, by path."""
    import torch

    return {
        name: {"code": module.code, "nodes": _nodes(module.graph)} for name, module in root.named_modules() if name and isinstance(module, torch.fx.GraphModule)
    }


_FRAME = re.compile(r'File "([^"]*)", line (\d+), in (\S+)')
# fx names the code it generates by a per-process counter (an ONNX source's modules are fx
# code): "<eval_with_key>.11" in one build is "<eval_with_key>.17" in the next.
_EVAL_COUNTER = re.compile(r"(?<=<eval_with_key>)\.\d+$")


def _frames(stack_trace: str) -> list[str]:
    """A node's source lines without the folders or fx's counters: the record is part of the
    stage's output, which must be the same bytes in every checkout and process (``modelbuild.lock``)."""
    return [f"{_EVAL_COUNTER.sub('', Path(file).name)}:{line}:{function}" for file, line, function in _FRAME.findall(stack_trace)]


def tensors(program: Any) -> dict[str, Any]:
    return {**program.state_dict, **program.constants}


def _meta(value: Any) -> list[Any]:
    import torch

    if not isinstance(value, torch.Tensor):
        return [type(value).__name__]
    return [str(value.dtype), list(value.shape), list(value.stride()), value.is_contiguous()]


def value_digests(program: Any) -> dict[str, str]:
    """The sha256 of every tensor's bytes: taken before lowering, so a pass that changed a
    tensor in place cannot pass unseen."""
    return {name: hashlib.sha256(plain_bytes(value)).hexdigest() for name, value in tensors(program).items() if is_tensor(value)}


def is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def plain_bytes(tensor: Any) -> bytes:
    """A tensor's own bytes (a clone: a view's storage holds more than the view)."""
    import torch

    return storage_bytes(tensor.detach().clone(memory_format=torch.contiguous_format))


def storage_bytes(tensor: Any) -> bytes:
    """What both serialisers write: the bytes of a tensor's whole storage (or of a storage)."""
    import ctypes

    storage = tensor.untyped_storage() if hasattr(tensor, "untyped_storage") else tensor
    size = storage.nbytes()
    if size == 0:
        return b""
    return bytes(ctypes.cast(storage.data_ptr(), ctypes.POINTER(ctypes.c_char * size)).contents)


def read_by_graph(program: Any) -> set[str]:
    """The tensors some node of the exported graph reads (a training-only head's weights are
    in the state dict but read by nothing, so their value cannot matter)."""
    signature = program.graph_signature
    tables = (signature.inputs_to_parameters, signature.inputs_to_buffers, signature.inputs_to_lifted_tensor_constants)
    return {table[node.name] for node in program.graph.nodes if node.op == "placeholder" and node.users for table in tables if node.name in table}


STRUCTURE_CHANGED = "the program's structure or settings changed"


def say_why_converted(job: Any, reason: str) -> None:
    """Put a refused patch in the stage's summary row (``info.patch_refused``), unless the
    program itself changed, which is an ordinary rebuild: after a weights-only change, a user
    waiting on a full conversion should see why it was not a patch."""
    job.log.info("converting in full: %s", reason)
    if reason != STRUCTURE_CHANGED:
        job.info["patch_refused"] = reason


def refusal(record: dict[str, Any], record_format: int, program: Any, settings: dict[str, Any], kind: str, unstored: str) -> str | None:
    """Why a previous output's record cannot take this program's weights, in words; None when
    it can as far as both patches agree: the record was not refused, has this format and this
    program's fingerprint, and no tensor it stores under no name of its own (``fixed``) changed.
    ``kind`` names the previous output, ``unstored`` says why such a tensor matters."""
    if record.get("format") == record_format and "refused" in record:
        return f"the previous {kind} cannot be patched: {record['refused']}"
    if record.get("format") != record_format or record.get("fingerprint") != fingerprint(program, settings):
        return STRUCTURE_CHANGED
    values = tensors(program)
    changed = sorted(
        name for name, digest in record["fixed"].items() if name not in values or hashlib.sha256(plain_bytes(values[name])).hexdigest() != digest
    )  # only the tensors the record keeps: hashing every weight would cost a second per GB
    return f"{changed[0]} changed but {unstored}" if changed else None
