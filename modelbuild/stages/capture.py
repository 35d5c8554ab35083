"""``capture``: the prepared module as TorchScript (trace, script) or an ExportedProgram.

Output folder: ``module.pt`` and/or ``program.pt2``, and ``capture.json`` saying which one a
converter should read (and why, when a compatibility fallback chose it).
"""

from __future__ import annotations

import json
from typing import Any

from modelbuild.errors import StageFailure, UserError
from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES
from modelbuild.stages.base import Stage, StageJob


def input_signature(model: ModelSpec, full: bool) -> list[dict[str, Any]]:
    """What capture reads of the inputs: default shapes and dtypes, plus ranges for export."""
    keep = {"name", "kind", "dtype", "normalize", "scale", "bias", "color_layout", "range"}
    result = []
    for inp in model.data["inputs"]:
        entry = {k: v for k, v in inp.items() if k in keep}
        if full:
            entry.update({k: inp[k] for k in ("shape", "shapes", "default_shape") if k in inp})
        else:
            from modelbuild.manifest.shapes import shape_at

            entry["default_shape"] = shape_at(inp, "default")
        result.append(entry)
    return result


def output_selectors(model: ModelSpec) -> list[dict[str, Any]]:
    """What the captured module returns: each output's name and selector (descriptions aside)."""
    return [{k: o[k] for k in ("name", "select") if k in o} for o in model.data.get("outputs") or []]


def module_params(model: ModelSpec) -> dict[str, Any]:
    """What a stage that rebuilds the wrapped eager module reads: the wrapper, every input's
    full signature (shapes and ranges included) and the output selection."""
    return {"inputs": input_signature(model, full=True), "wrapper": model.data["wrapper"], "outputs": output_selectors(model)}


def structural_prepare(model: ModelSpec) -> dict[str, Any]:
    """``prepare`` minus ``dtype``: what every capture of the module reads. The weights' dtype
    belongs to the torch-side targets that ask for it, never to the Core ML conversion."""
    return {k: v for k, v in model.data["prepare"].items() if k != "dtype" and v}


def target_capture_params(model: ModelSpec) -> dict[str, Any]:
    """What the model's targets add to the capture key (each target decides; see
    ``Target.capture_params``)."""
    from modelbuild.targets import TARGETS

    params: dict[str, Any] = {}
    for target in sorted(model.data["targets"]):
        params.update(TARGETS.get(target).capture_params(model))
    if model.data["capture"]["mode"] == "export" and any(TARGETS.get(t).trace_for_recurrent for t in model.data["targets"]):
        params["recurrent_trace"] = True  # the capture then writes a trace too: it is part of the output
    return params


def _calibrates(model: ModelSpec, target: str) -> bool:
    quantize = model.data["targets"][target].get("quantize")
    return bool(quantize) and quantize.get("mode", "static") != "dynamic"  # dynamic quantisation observes no samples


def calibration(model: ModelSpec, target: str) -> dict[str, Any]:
    """What a quantising export reads beyond the module: how many samples, and the real data."""
    if not _calibrates(model, target):
        return {}
    quantize = model.data["targets"][target]["quantize"]
    return {"calibration": {"samples": quantize["calibration_samples"], "data": "data" in model.data["validate"], "inputs": input_signature(model, full=True)}}


def calibration_files(model: ModelSpec, target: str) -> dict[str, str]:
    if _calibrates(model, target) and "data" in model.data["validate"]:
        return {"validate.data": str(model.resolve_path(model.data["validate"]["data"]))}
    return {}


def target_options(model: ModelSpec, target: str) -> dict[str, Any]:
    """A target's resolved options minus ``validate``: tolerances never change an artifact."""
    return {"targets": {target: {k: v for k, v in model.data["targets"][target].items() if k != "validate"}}}


@STAGES.register
class CaptureStage(Stage):
    name = "capture"
    # v5: scripted modules are frozen in eval mode (no training-only branches)
    # v6: the model is built with the random generators seeded (torch_side.loading.seeded)
    version = 6
    tools = ("torch",)
    warm_imports = ("torch",)
    deps = ("source",)

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        data = model.data
        # trace/script read only default shapes (plus min shapes for the check); export also
        # turns every range into a dynamic dimension.
        return {
            "wrapper": data["wrapper"],
            "capture": data["capture"],
            "inputs": input_signature(model, full=data["capture"]["mode"] == "export" or data["capture"]["check"]),
            "outputs": output_selectors(model),
            "prepare": structural_prepare(model),
            **target_capture_params(model),
        }

    def run(self, job: StageJob) -> None:
        import torch

        from modelbuild.torch_side import capture as cap
        from modelbuild.torch_side.eager import build_prepared
        from modelbuild.torch_side.samples import make_inputs
        from modelbuild.torch_side.wrapper import check_selectors

        ctx = job.node.context
        params = job.node.params
        mode = params["capture"]["mode"]
        inputs = ctx["inputs"]
        prepared, model, notes = build_prepared(ctx, job.inputs["source"], params["wrapper"], job.where, params["prepare"])
        job.notes += notes
        example = make_inputs(inputs, "default", seed=0)
        with torch.no_grad():
            try:
                raw = prepared.raw(*example)
            except Exception as exc:  # noqa: BLE001
                raise UserError(
                    f"{job.where('inputs')}: the model fails on example inputs of the declared shapes "
                    f"{[list(t.shape) for t in example]}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                ) from exc
        check_selectors(raw, ctx["outputs"], job.where)
        manifest: dict[str, Any] = {"mode": mode, "inputs": [i["name"] for i in inputs]}
        with torch.no_grad():
            if mode == "export":
                recurrent = cap.has_recurrent_layers(model)
                program, captured = None, None
                try:
                    program = cap.export(prepared, example, inputs, job.where)
                except UserError:
                    if not recurrent:
                        raise
                    job.notes.append("compat: torch.export of the recurrent layers failed (see log); captured by trace instead")
                    job.log.warning("torch.export failed", exc_info=True)
                if program is not None:
                    torch.export.save(program, str(job.out / "program.pt2"))
                    manifest["program"] = manifest["coreml_source"] = "program.pt2"
                    captured = program.module()
                if recurrent and params.get("recurrent_trace"):
                    # coremltools 9.0 cannot convert the ExportedProgram of nn.LSTM/GRU/RNN;
                    # it converts their trace, so the Core ML target reads a trace instead
                    # (Target.trace_for_recurrent).
                    traced, messages = cap.trace(prepared, example)
                    cap.save_torchscript(traced, job.out / "module.pt")
                    manifest["coreml_source"] = "module.pt"
                    job.notes.append("compat: recurrent layers: Core ML converts a trace (coremltools cannot convert their torch.export graph)")
                    job.notes += tracer_notes(messages)
                    captured = captured or traced
                if captured is None:
                    raise UserError(f"{job.where('capture.mode')}: torch.export failed and nothing else can capture this model; use mode 'trace'")
            else:
                if mode == "script":
                    captured, messages = cap.script(
                        model,
                        prepared,
                        example,
                        params["capture"]["trace_submodules"],
                        job.where,
                        before_script=lambda module: _before_script(ctx, params, module),
                    )
                else:
                    captured, messages = cap.trace(prepared, example)
                job.notes += tracer_notes(messages)
                for message in messages:
                    job.log.warning("TracerWarning: %s", message)
                cap.save_torchscript(captured, job.out / "module.pt")
                manifest["module"] = "module.pt"
                manifest["coreml_source"] = "module.pt"
            if params["capture"]["check"]:
                problem = cap.check_against_eager(captured, prepared, inputs)
                if problem:
                    hint = [n for n in job.notes if n.startswith("tracer:")]
                    raise StageFailure(
                        f"{job.where('capture.check')}: the {mode} capture does not compute what the model computes: "
                        f"{problem}"
                        + (f"; {hint[0]}" if hint else "")
                        + ". Fix the model code (or capture with mode script/export); check: false skips this test"
                    )
        (job.out / "capture.json").write_text(json.dumps(manifest, sort_keys=True, indent=1))


def _before_script(ctx: dict[str, Any], params: dict[str, Any], module: Any) -> list[str]:
    from modelbuild.targets import TARGETS

    notes: list[str] = []
    for target in sorted(ctx["targets"]):
        notes += TARGETS.get(target).before_script(params, module)
    return notes


def tracer_notes(messages: list[str]) -> list[str]:
    """Each distinct TracerWarning with the model's source line (a Python value baked in as a
    constant, data-dependent control flow): the places a trace may be wrong."""
    notes = []
    for message in messages[:3]:
        short = message.split(". ")[0]
        notes.append(f"tracer: {short if len(short) <= 110 else short[:107] + '...'}")
    if len(messages) > 3:
        notes.append(f"tracer: {len(messages) - 3} more warning(s) in the log")
    return notes
