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
    version = 2
    tools = ("torch",)
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
