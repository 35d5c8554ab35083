"""Weights-only rebuilds of an ExecuTorch program without lowering it again.

Lowering a program to XNNPACK is the slow part of a rebuild after new weights (a small GPT
with a flexible length: 13 s of symbolic-shape work), yet for a float program its output
depends on the weights only through the constant bytes it stores. This module records, while a
full conversion runs, where every stored constant came from (*by name*: which parameter, and
which of XNNPACK's own layout steps it went through), proves the record by re-deriving every
stored byte from the program's parameters, and later writes the same program with new
constants in place.

A patch is refused, and the stage converts in full, whenever anything but constant values
could differ from a full conversion:

- the exported program's graph, signature, shapes, source lines or any stage setting
  differ (the fingerprint);
- a constant came from anywhere but a parameter, buffer or lifted constant of the exported
  program by a known step (a folded batch norm, a quantised weight, a pass-made tensor);
- a tensor that feeds no stored constant changed value;
- weights that were equal (and so stored once: both ExecuTorch and XNNPACK keep one copy of
  equal bytes) are no longer equal, or weights that differed became equal;
- the previous program does not serialise back to its own bytes.

Equal bytes to a full conversion are proven for every example by tests/stages/
test_executorch_patch.py (each refusal: tests/torch_side/test_pte_constants.py); the verify
stage compares the patched program with PyTorch as it compares every artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from modelbuild.torch_side.program_identity import fingerprint, plain_bytes, read_by_graph, refusal, storage_bytes, value_digests
from modelbuild.torch_side.program_identity import tensors as program_tensors

RECORD = "constants.json"
FORMAT = 1
# What ExecutorchBackendConfig() serialises with (to_executorch's defaults, which the stage uses).
_SERIALISE = {"extract_delegate_segments": True, "segment_alignment": 128}


class NotPatchable(Exception):
    """Why this program's constants cannot be patched: the stage converts in full."""


@dataclass
class Recorder:
    """What XNNPACK's preprocessing stored, call by call: the named key, and where the bytes
    came from (None: somewhere a patch cannot follow)."""

    calls: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)


_ACTIVE = threading.local()  # the recorder of the lowering running on this thread, if any
_INSTALLED: list[bool] = []
_INSTALLING = threading.Lock()


@contextlib.contextmanager
def recording() -> Iterator[Recorder]:
    """Watch XNNPACK's constant serialisation for the length of one lowering.

    The watch is installed once per process and records only for the thread inside this
    block: a process that lowers two programs at once (a Dask worker with several threads)
    must never give one program's record another's calls.
    """
    _install()
    recorder = Recorder()
    outer = getattr(_ACTIVE, "recorder", None)
    _ACTIVE.recorder = recorder
    try:
        yield recorder
    finally:
        _ACTIVE.recorder = outer


def _install() -> None:
    from executorch.backends.xnnpack.operators.node_visitor import NodeVisitor

    with _INSTALLING:
        if _INSTALLED:
            return
        original = NodeVisitor.get_serialized_buffer_index
        parameters = inspect.signature(original)

        def watched(self: Any, *args: Any, **kwargs: Any) -> int:
            recorder = getattr(_ACTIVE, "recorder", None)
            if recorder is None:
                return original(self, *args, **kwargs)
            call = parameters.bind(self, *args, **kwargs)
            call.apply_defaults()
            given = call.arguments
            xnn_graph = given["xnn_graph"]
            before = len(xnn_graph.constant_data)
            index = original(self, *args, **kwargs)
            if len(xnn_graph.constant_data) > before:
                key = xnn_graph.constant_data[-1].named_key
                source = _source(self.exported_program, given["tensor"]) if given["quant_params"] is None else None
                if source is not None:
                    swap, groups = bool(given["swap_in_out_for_weights"]), int(given["groups"])
                    source["steps"] = {"nhwc": bool(given["convert_to_nhwc"]), "swap": swap, "groups": groups, "fp32": bool(given["force_fp32"])}
                recorder.calls.append((key, source))
            return index

        NodeVisitor.get_serialized_buffer_index = watched
        _INSTALLED.append(True)


def _source(program: Any, node: Any) -> dict[str, Any] | None:
    """The exported program's name for a placeholder's tensor; None for anything else."""
    if getattr(node, "op", None) != "placeholder":
        return None
    signature = program.graph_signature
    for table in (signature.inputs_to_parameters, signature.inputs_to_buffers, signature.inputs_to_lifted_tensor_constants):
        if node.name in table:
            return {"name": table[node.name]}
    return None


def _xnnpack_bytes(value: Any, steps: dict[str, Any]) -> bytes:
    """XNNPACK's constant serialisation (NodeVisitor.get_serialized_buffer_index, float path),
    step by step."""
    import torch

    const = value.contiguous()
    if const.dtype not in (torch.float16, torch.bfloat16) or steps["fp32"]:
        const = const.to(dtype=torch.float32).contiguous()
    if steps["swap"]:
        groups, shape = steps["groups"], const.shape
        const = const.reshape((groups, const.shape[0] // groups) + tuple(const.shape[1:]))
        const = const.permute((0, 2, 1) + tuple(range(3, const.dim())))
        const = const.reshape((shape[1] * groups, shape[0] // groups) + tuple(shape[2:])).contiguous()
    if steps["nhwc"]:
        const = const.to(memory_format=torch.channels_last)
    return storage_bytes(const)


@dataclass(frozen=True)
class Described:
    """The exported program as it was handed to the lowering (which may add constants to it
    or touch its graph in place): what a record is learnt from and a patch is checked against."""

    fingerprint: str
    digests: dict[str, str]
    read: frozenset[str]
    literals: frozenset[float]


def describe(program: Any, settings: dict[str, Any]) -> Described:
    """Taken just before lowering."""
    return Described(fingerprint(program, settings), value_digests(program), frozenset(read_by_graph(program)), frozenset(_literals(program)))


def learn(program: Any, before: Described, recorder: Recorder, pte: bytes, final: Any) -> dict[str, Any]:
    """The record of a full conversion, or NotPatchable. ``program`` is what was lowered,
    ``before`` its description taken before lowering, ``final`` the program to_executorch
    emitted (its placeholders name the constants outside the delegate)."""
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

    tensors = {name: value for name, value in program_tensors(program).items() if name in before.digests}
    after = value_digests(program)
    if {name: after.get(name) for name in before.digests} != before.digests:
        raise NotPatchable("lowering changed a tensor of the exported program in place")
    pte_file = deserialize_pte_binary(pte)
    if bytes(serialize_pte_binary(pte_file, **_SERIALISE)) != pte:
        raise NotPatchable("the program does not serialise back to its own bytes")
    if pte_file.mutable_data or len(pte_file.program.execution_plan) != 1:
        raise NotPatchable("the program has mutable buffers or several methods")
    named = _named_entries(pte_file, recorder, tensors)
    constants = _constant_entries(pte_file, final, tensors, before.literals)
    used = {name for entry in named + constants for name, _ in entry["sources"]}
    fixed = {name: digest for name, digest in sorted(before.digests.items()) if name not in used and name in before.read}
    return {"format": FORMAT, "fingerprint": before.fingerprint, "named": named, "constants": constants, "fixed": fixed}


def _named_entries(pte_file: Any, recorder: Recorder, tensors: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per named buffer, in the file's order, with every (tensor, steps) that
    produced those bytes; each re-derived here, so the record is proven, not assumed."""
    sources: dict[str, set[tuple[str, str]]] = {}
    for key, source in recorder.calls:
        if source is None:
            raise NotPatchable("a delegate constant does not come straight from a weight (folded, quantised or pass-made)")
        sources.setdefault(key, set()).add((source["name"], json.dumps(source["steps"], sort_keys=True)))
    named = pte_file.named_data
    entries = []
    for key, placed in named.pte_data.items():
        index = placed.buffer_index
        if key not in sources:
            raise NotPatchable(f"named data {key[:12]} has no recorded source")
        read = bytes(named.buffers[index])
        derived = {_xnnpack_bytes(tensors[name], json.loads(steps)) if name in tensors else None for name, steps in sources[key]}
        data = next(iter(derived))
        if len(derived) != 1 or data is None or not _padded(data, read):
            names = ", ".join(sorted({name for name, _ in sources[key]}))
            raise NotPatchable(f"the stored bytes of {names} are not the value after XNNPACK's layout steps (a constant lowering computed)")
        if hashlib.sha256(data).hexdigest() != key:
            raise NotPatchable("a named buffer's key is not the sha256 of its bytes")
        entries.append({"key": key, "index": index, "size": len(data), "sources": [[name, json.loads(steps)] for name, steps in sorted(sources[key])]})
    if len(entries) != len(named.buffers) or sorted(e["index"] for e in entries) != list(range(len(named.buffers))):
        raise NotPatchable("named buffers are shared between keys")
    return entries


def _constant_entries(pte_file: Any, final: Any, tensors: dict[str, Any], literals: frozenset[float]) -> list[dict[str, Any]]:
    """The constants outside any delegate, as the emitter lays them out: placeholders in graph
    order, equal bytes stored once. The layout is replayed and must equal the file's.

    Besides weights, lowering lifts the model's scalar literals into one-element constants
    (``/ math.sqrt(d)`` becomes ``_lifted_tensor_constant0``). Those are part of the graph,
    which the fingerprint covers, and are kept as they are; a pass-made constant that is not
    one of the graph's literals could be folded from weights and makes the program unpatchable.
    """
    from executorch.exir.tensor import TensorSpec

    signature = final.graph_signature
    tables = (signature.inputs_to_parameters, signature.inputs_to_buffers, signature.inputs_to_lifted_tensor_constants)
    stored = [bytes(buffer.storage) for buffer in pte_file.program.constant_buffer]
    layout: list[bytes] = [b""]
    where: dict[bytes, int] = {}
    sources: dict[int, set[str]] = {}
    for node in final.graph.nodes:
        spec = node.meta.get("spec")
        if node.op != "placeholder" or not isinstance(spec, TensorSpec) or not spec.const:
            continue
        name = next((table[node.name] for table in tables if node.name in table), None)
        data = storage_bytes(spec.storage) if spec.allocated_memory != 0 else b""
        literal = name not in tensors and _is_literal(spec, data, literals)
        if not literal and (name is None or name not in tensors or storage_bytes(tensors[name].contiguous()) != data):
            raise NotPatchable(f"program constant {node.name} is not a weight of the exported program as it was, nor one of its literals")
        index = where.get(data)
        if index is None:
            index = where[data] = len(layout)
            layout.append(data)
        sources.setdefault(index, set()).add(LITERAL if literal else str(name))
    # A file's constants are read back with the zeros that align the next one.
    if len(layout) != len(stored) or not all(_padded(data, read) for data, read in zip(layout, stored)):
        raise NotPatchable("the program's constants are not laid out as replayed")
    entries = []
    for index in sorted(sources):
        if LITERAL in sources[index] and len(sources[index]) > 1:
            raise NotPatchable("a weight is stored as one with a literal of the graph")
        entries.append({"index": index, "size": len(layout[index]), "sources": sorted([name, None] for name in sources[index])})
    return entries


LITERAL = "<literal>"  # a constant entry holding one of the graph's scalar literals: never patched


def _literals(program: Any) -> set[float]:
    """Every number written into the exported graph's calls."""
    import torch

    found: set[float] = set()
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        flat, _ = torch.utils._pytree.tree_flatten((node.args, node.kwargs))
        found.update(float(item) for item in flat if isinstance(item, (int, float)) and not isinstance(item, bool))
    return found


def _is_literal(spec: Any, data: bytes, literals: frozenset[float]) -> bool:
    import torch

    if not data:
        return False
    if torch.frombuffer(bytearray(data), dtype=spec.dtype).numel() != 1:
        return False
    # Compared in the constant's dtype: 1e-5 lifted to float32 is not the float 1e-5.
    return any(plain_bytes(torch.tensor(literal, dtype=spec.dtype)) == data for literal in literals)


def patch(previous: Path, artifact: str, program: Any, settings: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The previous program with this program's constants, and its record; NotPatchable when
    a full conversion could give anything else."""
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

    try:
        record = json.loads((previous / RECORD).read_text())
        old = (previous / artifact).read_bytes()
    except (OSError, ValueError) as exc:
        raise NotPatchable(f"no usable previous program: {exc}") from None
    why = refusal(record, FORMAT, program, settings, "program", "feeds no stored constant directly")
    if why is not None:
        raise NotPatchable(why)
    tensors = program_tensors(program)
    pte_file = deserialize_pte_binary(old)
    renamed: dict[str, str] = {}
    new_named: list[dict[str, Any]] = []
    for entry in record["named"]:
        data = _agreed({_xnnpack_bytes(tensors[name], steps) for name, steps in entry["sources"]})
        key = hashlib.sha256(data).hexdigest()
        if len(data) != entry["size"]:
            raise NotPatchable("a constant's size changed")
        pte_file.named_data.buffers[entry["index"]] = data + bytes(pte_file.named_data.buffers[entry["index"]])[len(data) :]
        renamed[entry["key"]] = key
        new_named.append({**entry, "key": key})
    if len(set(renamed.values())) != len(renamed):
        raise NotPatchable("weights that were stored apart are now equal")
    pte_file.named_data.pte_data = {renamed[key]: placed for key, placed in pte_file.named_data.pte_data.items()}
    _rename_in_delegates(pte_file.program, renamed)
    contents = []
    for entry in record["constants"]:
        if entry["sources"] == [[LITERAL, None]]:
            contents.append(bytes(pte_file.program.constant_buffer[entry["index"]].storage)[: entry["size"]])
            continue
        data = _agreed({storage_bytes(tensors[name].contiguous()) for name, _ in entry["sources"]})
        buffer = pte_file.program.constant_buffer[entry["index"]]
        if len(data) != entry["size"]:
            raise NotPatchable("a constant's size changed")
        buffer.storage = data + bytes(buffer.storage)[len(data) :]
        contents.append(data)
    if len(set(contents)) != len(contents):
        raise NotPatchable("weights that were stored apart are now equal")
    new = bytes(serialize_pte_binary(pte_file, **_SERIALISE))
    return new, {**record, "named": new_named}


def _padded(data: bytes, read: bytes) -> bool:
    return read[: len(data)] == data and not any(read[len(data) :])


def _agreed(candidates: set[bytes]) -> bytes:
    if len(candidates) != 1:
        raise NotPatchable("weights that were equal (stored once) now differ")
    return next(iter(candidates))


def _rename_in_delegates(program: Any, renamed: dict[str, str]) -> None:
    """Point every delegate at its constants' new keys (sha256 hex strings: equal length, so
    no offset moves). One pass over all keys at once, so a key that becomes another's old
    name is never renamed twice."""
    changes = {old: new for old, new in renamed.items() if old != new}
    if not changes:
        return
    pattern = re.compile(b"|".join(re.escape(old.encode()) for old in changes))
    for blob in program.backend_delegate_data:
        blob.data = pattern.sub(lambda match: changes[match.group(0).decode()].encode(), bytes(blob.data))


def write_record(out: Path, record: dict[str, Any]) -> None:
    (out / RECORD).write_text(json.dumps(record, sort_keys=True, indent=1) + "\n")
