"""``onnx.export``: ``torch.onnx.export`` (the torch.export-based exporter, which needs
onnxscript), with a dynamic axis per flexible dimension, checked, written deterministically."""

from __future__ import annotations

import json
from typing import Any

from modelbuild.errors import StageFailure, first_line
from modelbuild.manifest.spec import ModelSpec
from modelbuild.runtimes.base import missing_module
from modelbuild.stages import STAGES
from modelbuild.stages.base import PREVIOUS, Stage, StageJob
from modelbuild.stages.capture import calibration, calibration_files, module_params, structural_prepare, target_options
from modelbuild.stages.reference import output_names
from modelbuild.usercode.plugins import plugin_params


@STAGES.register
class OnnxExportStage(Stage):
    name = "onnx.export"
    # v6: no TorchScript-exporter fallback for data-dependent control flow (it would bake one pass of a loop in)
    # v7: no torch.export symbol names in the graph's metadata (they depend on what the worker ran before)
    # v8: optimised from the translated graph kept beside the file (unoptimized.onnx): weights-only rebuilds patch it
    # v9: the record's fingerprint covers the program's subgraphs (torch.cond branches)
    # v10: an input's per-channel scaling folded into the first convolution's weights (fold_input_scale);
    #      the model is built with the random generators seeded (torch_side.loading.seeded)
    # v11: no fold of a scaling that broadcasts or promotes the input; no fold note on the
    #      TorchScript-exporter fallback (it exports the module, multiplication included)
    version = 11
    tools = ("torch", "onnx", "onnxscript")
    warm_imports = ("onnx", "onnxscript", "torch.onnx")
    deps = ("source", "capture")
    reuses_previous = True
    # No artifact of its own: onnx.package stamps the metadata and writes {model}.onnx.

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        return {
            **target_options(model, "onnx"),
            **module_params(model),
            "prepare": structural_prepare(model),
            **calibration(model, "onnx"),
            **plugin_params(model),
        }

    @classmethod
    def files(cls, model: ModelSpec) -> dict[str, str]:
        from modelbuild.usercode.plugins import plugin_files

        return {**calibration_files(model, "onnx"), **plugin_files(model)}

    def run(self, job: StageJob) -> None:
        for module, extra in (("onnx", "onnx"), ("onnxscript", "onnx")):
            reason = missing_module(module, extra)
            if reason:
                raise StageFailure(f"the onnx target needs {reason}")
        import onnx
        import torch

        from modelbuild.torch_side import onnx_constants
        from modelbuild.torch_side.capture import data_dependent_flow, data_dependent_message, dynamic_shapes, export_failure, export_sample
        from modelbuild.torch_side.eager import build_prepared, flatten
        from modelbuild.torch_side.samples import make_inputs
        from modelbuild.usercode.plugins import import_plugins, onnx_translations

        ctx = job.node.context
        inputs = ctx["inputs"]
        translations = onnx_translations(import_plugins(job.node.params, job.files, job.imports_dir, job.where))
        opset = job.node.params["targets"]["onnx"]["opset"]
        captured = json.loads((job.inputs["capture"] / "capture.json").read_text())
        example = make_inputs(inputs, "default", seed=0)
        fixed = job.node.params["targets"]["onnx"]["fixed_shapes"]
        if "program" in captured and not fixed:
            source: Any = torch.export.load(str(job.inputs["capture"] / captured["program"]))
            count = len(flatten(source.module()(*example)))
            shapes = None  # the program carries its own dynamic dimensions
        else:
            source, _model, _notes = build_prepared(ctx, job.inputs["source"], ctx["wrapper"], job.where, job.node.params["prepare"])
            with torch.no_grad():
                count = len(flatten(source(*example)))
            shapes = None if fixed else {"inputs": dynamic_shapes(inputs)}
            if shapes is not None:
                example = export_sample(example, inputs)
        names = output_names(ctx["outputs"], count)
        settings = {"stage": self.version, "params": job.node.params, "tools": self.tool_versions()}
        quantize = job.node.params["targets"]["onnx"].get("quantize")
        patchable = not translations and not quantize  # a translation plugin's code or calibration could change anything
        fold = job.node.params["targets"]["onnx"].get("fold_input_scale", True) and not quantize
        program = source if "program" in captured and not fixed else None
        if (patchable or fold) and program is None:
            # The exporter's own capture, made here so that the program can be compared with
            # the previous one (and folded); the exporter is then handed the program and skips capturing.
            with torch.no_grad():
                program = onnx_constants.capture(source, tuple(example), shapes)
        if fold and program is not None:
            from modelbuild.torch_side.input_scale import fold_and_note

            fold_and_note(program, "onnx", job.notes)
        proto, structure, record, problem = None, None, None, ""
        if patchable and program is not None and PREVIOUS in job.inputs:
            proto, structure, record = _patched(job, program, settings)
        if proto is None:
            try:
                translated = torch.onnx.export(
                    source if program is None else program,
                    tuple(example),
                    dynamo=True,
                    dynamic_shapes=shapes,
                    opset_version=opset,
                    input_names=[i["name"] for i in inputs],
                    output_names=names,
                    external_data=False,
                    verbose=False,
                    report=False,
                    optimize=False,  # optimised below, from the graph a weights-only rebuild keeps
                    custom_translation_table=translations or None,
                )
                assert translated is not None  # dynamo=True returns the program
                proto, structure, record = _optimized(job, translated, program if patchable else None, settings)
            except Exception as exc:  # noqa: BLE001
                job.log.warning("dynamo exporter failed", exc_info=True)
                condition = data_dependent_flow(exc)
                if condition is not None:
                    # The TorchScript-based exporter would trace one pass of the loop and bake it
                    # in: a wrong model, so no fallback here.
                    raise StageFailure(data_dependent_message(condition, "ONNX")) from exc
                problem = f"torch.onnx.export failed: {export_failure(exc, inputs)}"
        lost = [] if fixed or proto is None else specialised_axes(proto, inputs)
        if lost:
            problem = f"torch.export fixed the flexible dimension(s) {', '.join(lost)}"
            proto, structure, record = None, None, None
        if proto is None:
            if "program" in captured and not fixed:
                raise StageFailure(f"{problem} (full text in the log)")
            # The TorchScript-based exporter traces instead and keeps recurrent layers whole
            # (ONNX LSTM/GRU ops), so their sequence length stays dynamic.
            proto = legacy_export(source, example, inputs, names, opset, fixed)
            # It traces the module, not the folded program: the file keeps its multiplication.
            from modelbuild.torch_side.input_scale import FOLDED_NOTE

            job.notes[:] = [n for n in job.notes if not n.startswith(FOLDED_NOTE)]
            lost = [] if fixed else specialised_axes(proto, inputs)
            if lost:
                raise StageFailure(
                    f"{problem}, and so does the TorchScript-based exporter ({', '.join(lost)}); "
                    "set targets.onnx.fixed_shapes: true to export at the default shapes"
                )
            job.notes.append(f"compat: {problem}; exported with the TorchScript-based ONNX exporter, which keeps it flexible")
        strip_debug_metadata(proto)
        try:
            onnx.checker.check_model(proto, full_check=True)
        except Exception as exc:  # noqa: BLE001
            raise StageFailure(f"onnx.checker rejects the exported model: {first_line(exc)}") from exc
        artifact = job.out / "model.onnx"
        artifact.write_bytes(proto.SerializeToString(deterministic=True))
        if patchable:
            why = "exported by the TorchScript-based exporter" if problem else "torch.export could not capture the model as the exporter does"
            onnx_constants.write(job.out, structure, record or {"format": onnx_constants.FORMAT, "refused": why})
        if quantize:
            self._quantize(job, artifact, quantize)
        job.info["opset"] = opset
        job.info["dynamic_axes"] = {i.name: [d.dim_param for d in i.type.tensor_type.shape.dim if d.dim_param] for i in proto.graph.input}

    @staticmethod
    def _quantize(job: StageJob, artifact: Any, quantize: dict[str, Any]) -> None:
        """Replace the float file with its int8 version (the float one is the base model's)."""
        from modelbuild.quantize.keep_float import Unmatched
        from modelbuild.quantize.onnx_int8 import quantize as quantize_onnx
        from modelbuild.torch_side.samples import calibration_inputs

        inputs = job.node.context["inputs"]
        samples = [] if quantize["mode"] == "dynamic" else calibration_inputs(inputs, quantize["calibration_samples"], job.files.get("validate.data"))
        feeds = [{i["name"]: t.numpy() for i, t in zip(inputs, sample)} for sample in samples]
        float_size = artifact.stat().st_size
        try:
            quantize_onnx(artifact, artifact, quantize["mode"], quantize["per_channel"], feeds, quantize.get("keep_float", []))
        except Unmatched as exc:
            raise StageFailure(f"{job.where('targets.onnx.quantize.keep_float')}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001
            raise StageFailure(f"{job.where('targets.onnx.quantize')}: onnxruntime quantisation ({quantize['mode']}) failed: {first_line(exc)}") from exc
        job.info["float_size"] = float_size
        job.notes.append(
            f"int8 {quantize['mode']}"
            + (f", calibrated on {len(feeds)} sample(s)" if feeds else "")
            + (f", float kept in {', '.join(quantize['keep_float'])}" if quantize.get("keep_float") else "")
            + f": {float_size / 1024:.0f} KB → {artifact.stat().st_size / 1024:.0f} KB"
        )


def _optimized(job: StageJob, translated: Any, program: Any | None, settings: dict[str, Any]) -> tuple[Any, Any | None, dict[str, Any] | None]:
    """(the file, the translated graph without weights, its record): the exporter's optimizer
    on the translated graph, filled with the program's weights by name when that graph can
    take a later program's weights (see modelbuild.torch_side.onnx_constants)."""
    from modelbuild.torch_side import onnx_constants

    unoptimized = translated.model_proto
    strip_debug_metadata(unoptimized)
    if program is None:
        return onnx_constants.optimize(unoptimized), None, None
    try:
        structure, record = onnx_constants.learn(unoptimized, program, translated.exported_program, settings)
        return onnx_constants.optimize(onnx_constants.filled(structure, program, record)), structure, record
    except onnx_constants.NotPatchable as exc:
        return onnx_constants.optimize(unoptimized), None, {"format": onnx_constants.FORMAT, "refused": str(exc)}
    except Exception:  # noqa: BLE001 - the export is fine; only its record failed (never a reason to change exporters)
        job.log.warning("recording the translated graph failed; the next weights-only rebuild exports in full", exc_info=True)
        refused = "recording the translated graph failed (see the log of the build that made it)"
        return onnx_constants.optimize(unoptimized), None, {"format": onnx_constants.FORMAT, "refused": refused}


def _patched(job: StageJob, program: Any, settings: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]] | tuple[None, None, None]:
    """The previous translated graph with this program's weights, optimised, when that is
    provably what a full export would write; (None, None, None): export in full."""
    from modelbuild.torch_side import onnx_constants
    from modelbuild.torch_side.program_identity import say_why_converted

    try:
        model, structure, record = onnx_constants.patch(job.inputs[PREVIOUS], program, settings)
        proto = onnx_constants.optimize(model)
    except onnx_constants.NotPatchable as exc:
        say_why_converted(job, str(exc))
        return None, None, None
    except Exception:  # noqa: BLE001 - a record from other code, a file the cache lost: exporting in full is always right
        job.log.warning("patching the previous ONNX graph failed; exporting in full", exc_info=True)
        return None, None, None
    job.info["constants_patched"] = True
    job.log.info("weights-only change: the previous ONNX graph with new weights (%d initializers)", len(record["weights"]))
    return proto, structure, record


def specialised_axes(proto: Any, inputs: list[dict[str, Any]]) -> list[str]:
    """Flexible manifest dimensions that the ONNX graph fixed to a number."""
    from modelbuild.manifest.shapes import dims

    lost = []
    graph_inputs = {i.name: i for i in proto.graph.input}
    for inp in inputs:
        declared = graph_inputs.get(inp["name"])
        if declared is None:
            continue
        for axis, (dim, onnx_dim) in enumerate(zip(dims(inp), declared.type.tensor_type.shape.dim)):
            if dim.flexible and not onnx_dim.dim_param:
                lost.append(f"{inp['name']}[{axis}]")
    return lost


def legacy_export(module: Any, example: list[Any], inputs: list[dict[str, Any]], names: list[str], opset: int, fixed: bool) -> Any:
    import io

    import onnx
    import torch

    from modelbuild.manifest.shapes import dims

    axes = {} if fixed else {i["name"]: {a: d.symbol(i, a) for a, d in enumerate(dims(i)) if d.flexible} for i in inputs}
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            module,
            tuple(example),
            buffer,  # type: ignore[arg-type]  # a file object works; the stub names paths only
            dynamo=False,
            opset_version=opset,
            input_names=[i["name"] for i in inputs],
            output_names=names,
            dynamic_axes={k: v for k, v in axes.items() if v},
        )
    return onnx.load_from_string(buffer.getvalue())


def strip_debug_metadata(proto: Any) -> None:
    """The exporter records each node's Python stack, with the build machine's absolute paths:
    the same model built in two checkouts would differ, and ship those paths. It also writes
    torch.export's range constraints into the graph's metadata, named by symbol counters that
    are global to the process (``s41`` after other exports in the same worker, ``s11`` in a
    fresh one): debug text that would make the bytes depend on what ran before."""
    keep_graph = [p for p in proto.graph.metadata_props if not p.key.startswith("pkg.torch.export.")]
    del proto.graph.metadata_props[:]
    proto.graph.metadata_props.extend(keep_graph)
    graphs = [proto.graph] + [f for f in proto.functions]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
            del node.metadata_props[:]
            node.metadata_props.extend(keep)
            graphs += [a.g for a in node.attribute if a.HasField("g")] + [g for a in node.attribute for g in a.graphs]
