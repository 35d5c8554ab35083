"""``torchscript.export``: the captured TorchScript module as ``<model>.pt`` (and ``.ptl``).

A trace or script capture is shipped as it was captured; an ``export`` capture has no
TorchScript, so the wrapped model is traced here.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from modelbuild.errors import StageFailure, first_line
from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES
from modelbuild.stages.base import Stage, StageJob
from modelbuild.stages.capture import module_params, target_options


@STAGES.register
class TorchScriptExportStage(Stage):
    name = "torchscript.export"
    # v3: the model is built with the random generators seeded (torch_side.loading.seeded)
    version = 3
    tools = ("torch",)
    warm_imports = ("torch",)
    deps = ("source", "capture")
    artifacts = ("{model}.pt", "{model}.ptl")

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        dtype = model.data["prepare"].get("dtype", "float32")
        if dtype == "float32":
            return target_options(model, "torchscript")
        # Weights in another dtype: re-traced from the module, so the module is read too.
        return {**target_options(model, "torchscript"), **module_params(model), "prepare": model.data["prepare"]}

    def run(self, job: StageJob) -> None:
        import torch

        from modelbuild.torch_side import capture as cap
        from modelbuild.torch_side.eager import build_prepared, flatten
        from modelbuild.torch_side.samples import make_inputs

        ctx = job.node.context
        model = job.node.model
        captured = json.loads((job.inputs["capture"] / "capture.json").read_text())
        path = job.out / f"{model}.pt"
        example = make_inputs(ctx["inputs"], "default", seed=0)
        dtype = job.node.params.get("prepare", {}).get("dtype", "float32")
        if "module" in captured and dtype == "float32":
            shutil.copyfile(job.inputs["capture"] / captured["module"], path)
            cap.fresh_type_names()  # loading re-registers the module's class names: keep them as saved
            module = torch.jit.load(str(path), map_location="cpu")
        else:
            prepared, _model, _notes = build_prepared(ctx, job.inputs["source"], ctx["wrapper"], job.where, job.node.params.get("prepare"))
            if dtype != "float32":
                from modelbuild.torch_side.prepare import cast_module

                prepared = cast_module(prepared, dtype)
            with torch.no_grad():
                module, messages = cap.trace(prepared, example)
            job.notes.append(
                f"{dtype} weights: traced for TorchScript from the module"
                if dtype != "float32"
                else f"traced for TorchScript (the capture is {captured['mode']})"
            )
            cap.save_torchscript(module, path)
            cap.fresh_type_names()  # the lite file is written from the saved bytes: no paths, stable names
            module = torch.jit.load(str(path), map_location="cpu")
        mobile = job.node.params["targets"]["torchscript"].get("optimize_for_mobile")
        if mobile:
            module = _optimize_for_mobile(job, module, path, {} if mobile is True else mobile, example)
        if not job.node.params["targets"]["torchscript"].get("lite"):
            return
        lite = job.out / f"{model}.ptl"
        try:
            module._save_for_lite_interpreter(str(lite))
            from torch.jit.mobile import _load_for_lite_interpreter

            loaded = _load_for_lite_interpreter(str(lite))
        except Exception as exc:  # noqa: BLE001
            lite.unlink(missing_ok=True)
            job.notes.append(
                f"lite: this torch build cannot write or load lite-interpreter files ({type(exc).__name__}: {first_line(exc)}); only {model}.pt was written"
            )
            return
        with torch.no_grad():
            want, got = flatten(module(*example)), flatten(loaded(*example))
        if any(not torch.allclose(a, b, atol=1e-5, rtol=1e-5) for a, b in zip(want, got)):
            raise StageFailure(f"the lite-interpreter file {model}.ptl computes something else than {model}.pt on the default sample")
        job.notes.append(f"lite: {model}.ptl written; the lite interpreter matches {model}.pt on the default sample")


def _optimize_for_mobile(job: StageJob, module: Any, path: Any, options: dict[str, Any], example: list[Any]) -> Any:
    """The module after torch's mobile optimizer, saved over ``path`` (what a mobile app loads),
    with the op counts it changed. Verification and benchmarks then run this file."""
    import torch
    from torch.utils.mobile_optimizer import MobileOptimizerType, optimize_for_mobile

    from modelbuild.torch_side import capture as cap

    blocklist = {getattr(MobileOptimizerType, name) for name in options.get("blocklist", [])}
    before = _op_count(module)
    try:
        optimized = optimize_for_mobile(module, optimization_blocklist=blocklist, preserved_methods=list(options.get("preserved_methods", [])))
    except RuntimeError as exc:
        if "XNNPACK is not enabled" in str(exc):
            raise StageFailure(
                f"{job.where('targets.torchscript.optimize_for_mobile')}: this torch build ({torch.__version__}) has no XNNPACK, "
                "which torch's mobile optimizer needs for every pass; build on a machine whose torch has it, or set optimize_for_mobile: false"
            ) from exc
        raise StageFailure(f"optimize_for_mobile failed: {first_line(exc)}") from exc
    cap.save_torchscript(optimized, path)
    cap.fresh_type_names()
    loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        loaded(*example)  # fails here, not on a phone, if the optimized module cannot run
    job.notes.append(
        f"optimize_for_mobile: {before} → {_op_count(loaded)} graph nodes"
        + (f" (skipped: {', '.join(sorted(options['blocklist']))})" if options.get("blocklist") else "")
    )
    return loaded


def _op_count(module: Any) -> int:
    try:
        return sum(1 for _ in module.graph.nodes())
    except (AttributeError, RuntimeError):
        return -1
