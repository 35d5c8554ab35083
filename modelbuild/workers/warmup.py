"""What a warm server loads before it forks: the libraries the stages import, exercised once.

Importing is half the cost; the first conversion in a process pays the rest (ExecuTorch's
first lowering took 5.9 s here, the next 1.0 s: operator tables, dispatch caches). The server
runs one tiny conversion per library on one thread, so its forks start past both, and its
thread pools are never started before a fork (a fork of a running OpenMP pool can hang).
The models are built here, never the user's: no user code runs in the server.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

# What a handed-over build (modelbuild.workers.delegate) imports before it runs a stage: the
# command line, the manifest checker, the planner and executor, the console, ONNX (the package
# stage stamps metadata in the coordinator). Half a second of a metadata-only rebuild otherwise.
COORDINATOR = (
    "modelbuild.cli.commands",
    "modelbuild.cli.fastpath",
    "modelbuild.cli.terminal",
    "modelbuild.manifest.load",
    "modelbuild.manifest.project",
    "modelbuild.graph.planner",
    "modelbuild.graph.executor",
    "modelbuild.graph.worker",
    "modelbuild.stages.checks",
    "modelbuild.store.objects",
    "modelbuild.store.lock",
    "modelbuild.store.admin",
    "modelbuild.remote.config",
    "modelbuild.report.document",
    "modelbuild.report.sizes",
    "modelbuild.release.lockfile",
    "modelbuild.workers.client",
    "modelbuild.workers.config",
    "jsonschema",
    "rich.console",
    "rich.table",
    "onnx",
)


def modules() -> list[str]:
    """The coordinator's modules, then those every built-in stage and runtime names in
    ``warm_imports``, in order."""
    from modelbuild.runtimes import RUNTIMES
    from modelbuild.stages import BUILTIN, STAGES

    names: list[str] = [*COORDINATOR, *BUILTIN]
    for stage in STAGES.names():
        names += STAGES.get(stage).warm_imports
    for runtime in RUNTIMES.names():
        names += RUNTIMES.get(runtime).warm_imports
    return list(dict.fromkeys(names))


def warm(log: logging.Logger) -> dict[str, float]:
    """Import and exercise; seconds per step. A library that is missing or fails is left cold
    (its stage then imports it itself, as a cold worker would). ``MODELBUILD_WORKERS_WARM_UP=0``
    skips it all: a plain fork server, for small machines and tests of the server itself."""
    if os.environ.get("MODELBUILD_WORKERS_WARM_UP") == "0":
        return {}
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    timings: dict[str, float] = {}
    try:
        for name in modules():
            timings[name] = _timed(log, name, functools.partial(importlib.import_module, name))
        for name, exercise in EXERCISES.items():
            timings[f"exercise {name}"] = _timed(log, f"exercise {name}", exercise)
    finally:
        settle_vector_math()  # after every library had its turn, still on one thread
        torch.set_num_threads(threads)
    return timings


# The element-wise float functions ATen may hand to MKL's vector math (vml.h) or to its own
# vectorised kernels, each a separate first use.
UNARY = (
    *("tanh", "sigmoid", "exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "reciprocal"),
    *("erf", "erfc", "erfinv", "lgamma", "digamma", "sin", "cos", "tan", "asin", "acos", "atan"),
    *("sinh", "cosh", "asinh", "acosh", "atanh", "trunc", "abs", "ceil", "floor", "round", "frac", "neg"),
)


def settle_vector_math() -> None:
    """Use every element-wise function once, on this thread, before any fork.

    Measured on a Xeon with AVX-512 (torch 2.13, MKL 2024.2): after a matrix product or a
    convolution in the server, a fork's first ``tanh`` on two threads computed the second
    thread's half of the tensor by another path, off by up to 5e-5 (in 5 to 11 of 12 forks;
    never in a fresh process, never on a later call). A generator's reference outputs then
    differed from a cold build's, and its verification failed. Whatever the library settles on
    first use is settled here, so every fork computes what a cold worker computes
    (tests/workers/test_warmup.py compares them bit for bit)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a thread pool started before a fork can hang the fork
    try:
        for dtype in (torch.float32, torch.float64):
            values = torch.linspace(-0.9, 0.9, 1 << 16, dtype=dtype)
            for name in UNARY:
                function = getattr(torch, name, None)  # a later torch may drop one: the server still starts
                if function is not None:
                    function(values)
    finally:
        torch.set_num_threads(threads)


def _timed(log: logging.Logger, what: str, step: Callable[[], object]) -> float:
    started = time.perf_counter()
    try:
        step()
    except Exception as exc:  # noqa: BLE001 - an optional library: left to the stage that needs it
        log.info("warm-up: %s failed: %s: %s", what, type(exc).__name__, exc)
        return -1.0
    seconds = time.perf_counter() - started
    log.info("warm-up: %s in %.2fs", what, seconds)
    return seconds


def _tiny() -> tuple[Any, tuple[Any, ...]]:
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2)).eval()
    return model, (torch.zeros(1, 3, 8, 8),)


def _executorch() -> None:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model, sample = _tiny()
    program = torch.export.export(model, sample)
    to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()


def _coremltools() -> None:
    import coremltools as ct
    import torch

    model, sample = _tiny()
    traced = torch.jit.trace(model, sample)
    ct.convert(traced, inputs=[ct.TensorType(name="x", shape=(1, 3, 8, 8))], convert_to="mlprogram", skip_model_load=True)


def _onnx() -> None:
    import torch

    model, sample = _tiny()
    with tempfile.TemporaryDirectory() as folder:
        torch.onnx.export(model, sample, str(Path(folder) / "tiny.onnx"), dynamo=True, verbose=False)


def _coordinator() -> None:
    """The command line's parser and the JSON-schema validator of a model manifest (each built
    once per process: 0.15 s of a handed-over build otherwise), and a table drawn once: rich
    loads its emoji and character-width tables on first use."""
    import io

    from rich.console import Console
    from rich.table import Table

    from modelbuild.manifest.schema import model_errors

    importlib.import_module("modelbuild.cli.commands").parser()  # by name: the command line is a layer above
    list(model_errors({}))
    table = Table("model", "stage")
    table.add_row("tiny ✓", ":white_check_mark: [bold]built[/] é")
    Console(file=io.StringIO(), width=80).print(table)


EXERCISES: dict[str, Callable[[], None]] = {
    "coordinator": _coordinator,
    "executorch": _executorch,
    "coremltools": _coremltools,
    "onnx": _onnx,
}
