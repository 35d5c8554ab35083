"""Load a saved ML-program package and evaluate it, op by op, in program order."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from modelbuild.mil.args import Args, constant, torch_dtype
from modelbuild.mil.registry import OPS


class UnsupportedOp(Exception):
    """A MIL op without an implementation here: named, never computed as zeros."""


@contextlib.contextmanager
def quiet_descriptors() -> Iterator[None]:
    """coremltools prints import-time noise (untested torch version, missing native libraries
    on Linux) from Python and C; none of it concerns the person running a command."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def load_program(package: Path) -> tuple[Any, Any]:
    """(MIL Program, protobuf spec) read from the package bytes, weights included."""
    if "coremltools" not in sys.modules:
        with quiet_descriptors():
            import coremltools  # noqa: F401
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    from modelbuild.coreml.package_io import read_spec

    spec = read_spec(package)
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{package.name} is a {spec.WhichOneof('Type')} model; the Linux executor runs ML programs (format: mlprogram)")
    weights = package / "Data" / "com.apple.CoreML" / "weights"
    return milproto_load(spec, spec.specificationVersion, str(weights)), spec


def program_ops(program: Any) -> set[str]:
    """Every op type in the program, blocks of control flow included."""
    found: set[str] = set()

    def walk(block: Any) -> None:
        for op in block.operations:
            found.add(op.op_type)
            for inner in op.blocks:
                walk(inner)

    for function in program.functions.values():
        walk(function)
    return found


def run_block(block: Any, env: dict[str, Any], inputs: list[Any], where: str = "") -> list[Any]:
    from modelbuild.mil import ops  # noqa: F401 - registers the implementations

    bound = block.inputs.values() if isinstance(block.inputs, dict) else block.inputs  # a Function keys them by name
    for var, value in zip(bound, inputs):
        env[var.name] = value
    for op in block.operations:
        if op.op_type == "const":
            env[op.outputs[0].name] = constant(op.outputs[0])
            continue
        if op.op_type.startswith("constexpr_"):
            # Weight decompression (dequantize, palette lookup, sparse to dense): the op's own
            # definition in coremltools computes the dense weight from the package's blobs.
            dense = op.materialized_val_inference()
            for out, value in zip(op.outputs, dense if isinstance(dense, tuple) else (dense,)):
                env[out.name] = decompressed(out, value)
            continue
        implementation = OPS.get(op.op_type)
        if implementation is None:
            raise UnsupportedOp(
                f"MIL op {op.op_type!r} (operation {op.name!r}{', ' + where if where else ''}) has no implementation in "
                "the Linux executor; see docs/mil-ops.md for the supported ops"
            )
        result = implementation(Args(op, env))
        results = result if isinstance(result, tuple) else (result,)
        for out, value in zip(op.outputs, results):
            env[out.name] = value
    return [env[v.name] if v.name in env else constant(v) for v in block.outputs]


def decompressed(var: Any, value: Any) -> torch.Tensor:
    tensor = torch.from_numpy(np.array(value))
    try:
        return tensor.to(torch_dtype(var.dtype))
    except (KeyError, TypeError):
        return tensor


class ProgramRunner:
    """Runs the ``main`` function of a package: inputs by name, outputs by name."""

    def __init__(self, package: Path) -> None:
        self.package = package
        self.program, self.spec = load_program(package)
        self.function = self.program.functions["main"]
        self.output_names = [o.name for o in self.spec.description.output]
        self.image_inputs = {i.name for i in self.spec.description.input if i.type.WhichOneof("Type") == "imageType"}

    def run(self, feeds: dict[str, Any], keep: bool = False) -> dict[str, Any]:
        """Outputs by name; with ``keep``, every value the program computed, by var name."""
        values = []
        for name, var in self.function.inputs.items():
            value = torch.as_tensor(np.array(feeds[name]))  # a copy: inputs may be read-only arrays
            if name in self.image_inputs and value.dim() == 4 and value.dtype == torch.uint8:
                value = value.permute(0, 3, 1, 2)  # uint8 NHWC pixels: the program scales and biases them itself
            values.append(value.to(torch_dtype(var.dtype)).contiguous())
        env: dict[str, Any] = {}
        with torch.no_grad():
            outputs = run_block(self.function, env, values, where=self.package.name)
        if keep:
            return env
        return dict(zip([v.name for v in self.function.outputs], outputs))

    def class_labels(self) -> list[str]:
        """A classifier program's labels (from its classify op), else []."""
        for op in self.function.operations:
            if op.op_type == "classify":
                return [str(c) for c in op.inputs["classes"].val]
        return []
