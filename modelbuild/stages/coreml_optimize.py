"""``coreml.optimize``: the manifest's compression steps applied to the raw package, in order.

Its own stage so that changing a step (the palettization bits, a sparsity) re-runs only this
stage and what follows it, never the conversion. With no steps it passes the package on
without importing coremltools.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from modelbuild.errors import StageFailure
from modelbuild.graph.node import StageNode
from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES
from modelbuild.stages.base import Stage, StageJob
from modelbuild.store.paths import disk_size

PACKAGE = "model.mlpackage"


@STAGES.register
class CoreMLOptimizeStage(Stage):
    name = "coreml.optimize"
    version = 4  # v4: carries ops.json (each op's torch module) on from the conversion
    tools = ("coremltools", "numpy", "scikit-learn")
    warm_imports = ("coremltools.optimize.coreml",)
    deps = ("coreml.convert",)

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        from modelbuild.coreml.compat import phase_switches

        coreml = model.data["targets"]["coreml"]
        if not coreml["optimize"]:
            return {"targets": {"coreml": {"optimize": []}}}
        return {"targets": {"coreml": {"optimize": coreml["optimize"], "compat": phase_switches(coreml["compat"], "optimize")}}}

    @classmethod
    def runs_in_worker(cls, node: StageNode) -> bool:
        return bool(node.params["targets"]["coreml"]["optimize"])

    def run(self, job: StageJob) -> None:
        from modelbuild.coreml.package_io import rewrite_package

        steps = job.node.params["targets"]["coreml"]["optimize"]
        source = job.inputs["coreml.convert"] / PACKAGE
        origins = job.inputs["coreml.convert"] / "ops.json"
        if origins.is_file():  # compression keeps op names: the locator still finds each op's module
            shutil.copyfile(origins, job.out / "ops.json")
        if not steps:
            rewrite_package(source, job.out / PACKAGE)
            return
        compressed = compress_package(source, steps, job.node.params["targets"]["coreml"]["compat"], job)
        before, after = disk_size(source), disk_size(compressed)
        job.info.update(
            {"size_before": before, "size_after": after, "steps": steps, "summary": f"{before / 1024:.0f} KB → {after / 1024:.0f} KB ({after / before:.0%})"}
        )


def compress_package(source: Path, steps: list[dict[str, Any]], compat: dict[str, bool], job: StageJob) -> Path:
    import coremltools as ct

    from modelbuild.coreml.compat import enabled, installed
    from modelbuild.coreml.compress import compressor, describe, needs_sklearn, optimization_config, step_kind
    from modelbuild.coreml.package_io import drop_conversion_date, write_package

    if any(needs_sklearn(s) for s in steps) and importlib.util.find_spec("sklearn") is None:
        raise StageFailure("palettize with mode kmeans needs scikit-learn: pip install 'modelbuild[compress]' (or use mode: uniform)")
    from modelbuild.coreml.determinism import fresh_conversion_state

    fresh_conversion_state()  # compression re-reads the program: its symbols must not depend on the worker's history
    mlmodel = ct.models.MLModel(str(source), skip_model_load=True)
    for index, step in enumerate(steps):
        kind, options = step_kind(step)
        before = _compressed_ops(mlmodel)
        job.log.info("optimize[%d]: %s %s", index, kind, options)
        joint = {"joint_compression": True} if index > 0 else {}  # a step after another compresses its output
        try:
            with installed(enabled(compat, "optimize")):
                mlmodel = compressor(ct, kind)(mlmodel, config=optimization_config(ct, kind, options), **joint)
        except Exception as exc:  # noqa: BLE001
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            field = job.where(f"targets.coreml.optimize[{index}].{kind}")
            raise StageFailure(f"{field}: coremltools could not {describe(step)}: {first}") from exc
        if _compressed_ops(mlmodel) == before:
            job.notes.append(
                f"optimize[{index}] {describe(step)} changed no weight: every weight is below weight_threshold "
                f"({options.get('weight_threshold', 2048)} elements) or outside op_types/op_names"
            )
    spec = mlmodel.get_spec()
    drop_conversion_date(spec)
    out = job.out / PACKAGE
    write_package(spec, Path(mlmodel.weights_dir), out)
    return out


def _compressed_ops(mlmodel: Any) -> int:
    """How many constexpr (decompress-at-load) ops the program holds: a step that adds none
    compressed nothing."""
    program = mlmodel.get_spec().mlProgram
    return sum(
        1
        for function in program.functions.values()
        for block in function.block_specializations.values()
        for op in block.operations
        if op.type.startswith("constexpr_")
    )
