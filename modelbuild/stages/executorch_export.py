"""``executorch.export``: torch.export with the manifest's dynamic dimensions, lowered with
``to_edge_transform_and_lower`` to a delegate, written as ``<model>.pte``."""

from __future__ import annotations

import json
from typing import Any

from modelbuild.errors import StageFailure, first_line
from modelbuild.manifest.spec import ModelSpec
from modelbuild.runtimes.base import missing_module
from modelbuild.stages import STAGES
from modelbuild.stages.base import PREVIOUS, Stage, StageJob
from modelbuild.stages.capture import calibration, calibration_files, module_params, target_options


def partitioners(backend: str) -> list[Any]:
    if backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return [XnnpackPartitioner()]
    if backend == "coreml":
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        return [CoreMLPartitioner()]
    return []  # portable: every op on ExecuTorch's portable kernels


@STAGES.register
class ExecuTorchExportStage(Stage):
    name = "executorch.export"
    # v3: PT2E calibration in float64 (scales independent of the CPU's kernels)
    # v4: XNNPACK-friendly decompositions (targets.executorch.decompose); the delegation report
    # v5: the report no longer specialises symbolic sizes (v4 programs could take only their sample's shape)
    # v6, v7: nearest upsampling decomposed at fixed sizes; report lines name the model's code, not modelbuild's wrapper
    # v8: constants.json (where each stored constant came from): weights-only rebuilds patch constants
    # v9: the record's fingerprint covers the program's subgraphs (torch.cond branches)
    # v10: nearest upsampling repeats inside XNNPACK; reshapes planned as views leave the report; inputs unplanned
    # v11: inputs stay planned when the model writes into one (ExecuTorch computed those from zeros)
    # v12: and when it returns one unchanged (likewise)
    # v13: nearest upsampling repeats rows by index_select, written straight into the output
    # v14: only at flexible sizes; at fixed ones the rows' multiplication stays inside XNNPACK
    # v15: an input's per-channel scaling folded into the convolution that reads it
    # v16: the model is built with the random generators seeded (torch_side.loading.seeded)
    # v17: a negative (cropping) reflection pad keeps torch's decomposition (the rewrite did not
    #      crop); no fold of a scaling that broadcasts or promotes the input
    version = 17
    tools = ("torch", "executorch")
    warm_imports = ("executorch.exir", "executorch.backends.xnnpack.partition.xnnpack_partitioner")
    deps = ("source", "capture")
    artifacts = ("{model}.pte",)
    reuses_previous = True

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        return {**target_options(model, "executorch"), **module_params(model), "prepare": model.data["prepare"], **calibration(model, "executorch")}

    @classmethod
    def files(cls, model: ModelSpec) -> dict[str, str]:
        return calibration_files(model, "executorch")

    def run(self, job: StageJob) -> None:
        reason = missing_module("executorch", "executorch")
        if reason:
            raise StageFailure(f"the executorch target needs ExecuTorch: {reason}")
        import torch
        from executorch.exir import to_edge_transform_and_lower

        from modelbuild.manifest.shapes import has_unbounded
        from modelbuild.torch_side.capture import (
            data_dependent_flow,
            data_dependent_message,
            dynamic_shapes,
            export_failure,
            export_sample,
            has_recurrent_layers,
        )
        from modelbuild.torch_side.eager import build_prepared
        from modelbuild.torch_side.samples import make_inputs

        ctx = job.node.context
        backend = job.node.params["targets"]["executorch"]["backend"]
        captured = json.loads((job.inputs["capture"] / "capture.json").read_text())
        options = job.node.params["targets"]["executorch"]
        # A captured program carries its own dynamic dims; reuse it only when they are what
        # ExecuTorch needs (no fixed shapes asked for, no unbounded dimension to bound).
        reusable = not options["fixed_shapes"] and not any(has_unbounded(i) for i in ctx["inputs"] if "shape" in i)
        quantize = options.get("quantize")
        reusable = reusable and not quantize and job.node.params["prepare"].get("dtype", "float32") == "float32"
        reusable = reusable and not job.node.params["prepare"].get("channels_last")
        if "program" in captured and reusable:
            program = torch.export.load(str(job.inputs["capture"] / captured["program"]))
        else:
            prepared, model, notes = build_prepared(ctx, job.inputs["source"], ctx["wrapper"], job.where, job.node.params["prepare"])
            job.notes += [n for n in notes if n.startswith("prepare:")]
            if job.node.params["prepare"].get("channels_last"):
                # XNNPACK packs weights in its own layout and its lowering expects them NCHW
                # ("Expected ..._weight to be NCHW in channels last reshape pass").
                model.to(memory_format=torch.contiguous_format)
                job.notes.append("channels_last: weights stay NCHW for XNNPACK, which lays them out itself; inputs are made channels-last")
            if job.node.params["prepare"].get("dtype", "float32") != "float32":
                from modelbuild.torch_side.prepare import cast_module

                prepared = cast_module(prepared, job.node.params["prepare"]["dtype"])
            example = make_inputs(ctx["inputs"], "default", seed=0)
            fixed = job.node.params["targets"]["executorch"]["fixed_shapes"]
            bound = job.node.params["targets"]["executorch"]["unbounded_max"]
            shapes = None if fixed else {"inputs": dynamic_shapes(ctx["inputs"], unbounded_max=bound)}
            if shapes is not None:
                example = export_sample(example, ctx["inputs"])
            if not fixed and any(has_unbounded(i) for i in ctx["inputs"] if "shape" in i):
                job.notes.append(f"dimensions without a max are planned up to {bound} (targets.executorch.unbounded_max)")
            try:
                if quantize:
                    from modelbuild.quantize.keep_float import Unmatched
                    from modelbuild.quantize.pt2e import quantize_for_xnnpack
                    from modelbuild.torch_side.samples import calibration_inputs

                    data = job.files.get("validate.data")
                    samples = calibration_inputs(ctx["inputs"], quantize["calibration_samples"], data)
                    mode = quantize.get("mode", "static")
                    keep_float = quantize.get("keep_float", [])
                    try:
                        program = quantize_for_xnnpack(prepared, tuple(example), shapes, samples, quantize["per_channel"], mode, keep_float)
                    except Unmatched as exc:
                        raise StageFailure(f"{job.where('targets.executorch.quantize.keep_float')}: {exc}") from exc
                    job.notes.append(
                        f"int8 PT2E ({mode}, XNNPACKQuantizer, {'per-channel' if quantize['per_channel'] else 'per-tensor'}), "
                        f"calibrated on {len(samples)} sample(s)"
                        + (" incl. validate.data" if data else "")
                        + (f", float kept in {', '.join(keep_float)}" if keep_float else "")
                    )
                else:
                    program = torch.export.export(prepared, tuple(example), dynamic_shapes=shapes, strict=False)
            except StageFailure:
                raise
            except Exception as exc:  # noqa: BLE001
                first = first_line(exc)
                if "Constraints violated" in first and has_recurrent_layers(model):
                    raise StageFailure(
                        "torch.export unrolls recurrent layers (nn.LSTM/GRU/RNN) over time, so ExecuTorch cannot keep "
                        "their sequence length flexible; set targets.executorch.fixed_shapes: true for a program "
                        "at the default shapes"
                    ) from exc
                condition = data_dependent_flow(exc)
                if condition is not None:
                    raise StageFailure(data_dependent_message(condition, "ExecuTorch")) from exc
                raise StageFailure(f"torch.export (needed by ExecuTorch) failed: {export_failure(exc, ctx['inputs'])}; see the log") from exc
            if fixed:
                job.notes.append("fixed_shapes: the program takes the default shapes only")
        if backend == "xnnpack":
            program = _friendlier(program, options.get("decompose", {}), job)
            if options.get("fold_input_scale", True) and not quantize:
                from modelbuild.torch_side.input_scale import fold_and_note

                fold_and_note(program, "executorch", job.notes)
        from modelbuild.torch_side import pte_constants as constants

        artifact = f"{job.node.model}.pte"
        settings = {"stage": self.version, "params": job.node.params, "tools": self.tool_versions()}
        patchable = backend in ("xnnpack", "portable") and not quantize
        if patchable and PREVIOUS in job.inputs and _patched(job, artifact, program, settings):
            return
        before = constants.describe(program, settings) if patchable else None
        mark = len(job.notes)
        try:
            with constants.recording() as recorder:
                edge = to_edge_transform_and_lower(program, partitioner=partitioners(backend))
            if backend != "portable":
                _report_delegation(edge, backend, job)  # before to_executorch, which rewrites the graph to out-variants
            must_plan = inputs_to_plan(edge)
            if must_plan and not options.get("planned_inputs"):
                job.notes.append(f"inputs planned (copied in at every call): the model {' and '.join(must_plan)}")
            lowered = edge.to_executorch(_backend_config(options, must_plan))
        except Exception as exc:  # noqa: BLE001
            first = first_line(exc)
            raise StageFailure(f"ExecuTorch lowering ({backend}) failed: {first}; try backend 'portable' (log has the rest)") from exc
        (job.out / artifact).write_bytes(lowered.buffer)
        delegated = _delegated_calls(lowered)
        job.info["backend"] = backend
        job.info["delegate_calls"] = delegated
        if backend != "portable" and delegated == 0:
            job.notes[:] = [n for n in job.notes if not n.startswith("delegation: ")]
            job.notes.append(f"no part of the model was delegated to {backend}; it runs on portable kernels")
        if before is None:
            return
        try:
            record = constants.learn(program, before, recorder, lowered.buffer, lowered.exported_program())
        except constants.NotPatchable as exc:
            record = {"format": constants.FORMAT, "refused": str(exc)}
        except Exception:  # noqa: BLE001 - the program is fine; only the record of its constants failed
            job.log.warning("recording the program's constants failed; the next weights-only rebuild converts in full", exc_info=True)
            record = {"format": constants.FORMAT, "refused": "recording the constants failed (see the log of the build that made it)"}
        # What a patched rebuild reports as this conversion did (notes and figures of the lowering).
        record["replay"] = {"notes": job.notes[mark:], "info": {k: job.info[k] for k in ("backend", "delegate_calls", "delegation") if k in job.info}}
        constants.write_record(job.out, record)


def _patched(job: StageJob, artifact: str, program: Any, settings: dict[str, Any]) -> bool:
    """Write the previous program with this program's constants, when that is provably what a
    full conversion would write (see modelbuild.torch_side.pte_constants); False: convert."""
    from modelbuild.torch_side import pte_constants as constants
    from modelbuild.torch_side.program_identity import say_why_converted

    previous = job.inputs[PREVIOUS]
    try:
        data, record = constants.patch(previous, artifact, program, settings)
        replay = record["replay"]
        notes, info = list(replay["notes"]), dict(replay["info"])
    except constants.NotPatchable as exc:
        say_why_converted(job, str(exc))
        return False
    except Exception:  # noqa: BLE001 - a record from other code, a file the cache lost: converting in full is always right
        job.log.warning("patching the previous program failed; converting in full", exc_info=True)
        return False
    (job.out / artifact).write_bytes(data)
    constants.write_record(job.out, record)
    job.notes += notes
    job.info.update(info)
    job.info["constants_patched"] = True
    job.log.info("weights-only change: the previous program with new constants (%d delegate, %d program)", len(record["named"]), len(record["constants"]))
    return True


def _backend_config(options: dict[str, Any], must_plan: list[str]) -> Any:
    """Inputs the caller owns by default: ExecuTorch otherwise copies each input into planned
    memory before every call (measured: 6% of the classifier's 0.6 ms, 40% of a lone scale).
    Not when ``must_plan`` names a reason (see ``inputs_to_plan``)."""
    from executorch.exir import ExecutorchBackendConfig
    from executorch.exir.passes import MemoryPlanningPass

    planned = bool(options.get("planned_inputs", False)) or bool(must_plan)
    return ExecutorchBackendConfig(memory_planning_pass=MemoryPlanningPass(alloc_graph_input=planned))


def inputs_to_plan(edge: Any) -> list[str]:
    """Why the lowered program's inputs must stay planned, if they must: ExecuTorch 1.5.1 gets
    two kinds of program wrong with an unplanned input (measured: each read zeros), one that
    writes into an input and one that returns an input unchanged as an output."""
    program = edge.exported_program()
    signature = program.graph_signature
    reasons = [f"writes into {name}" for name in sorted(set(signature.user_inputs_to_mutate.values()))]
    returned = {node.name for node in program.graph.output_node().all_input_nodes if node.op == "placeholder"}
    reasons += [f"returns {name} unchanged" for name in sorted(returned & set(signature.user_inputs))]
    return reasons


def _friendlier(program: Any, switches: dict[str, bool], job: StageJob) -> Any:
    """Apply the switched-on XNNPACK-friendly decompositions, and say which layers they met."""
    from modelbuild.torch_side.xnnpack_friendly import DECOMPOSITIONS, make_friendly

    met = {}
    for name, entries in DECOMPOSITIONS.items():
        if switches.get(name, True):
            ops = {op for op, _ in entries}
            count = sum(1 for node in program.graph.nodes if node.op == "call_function" and _meets(node, ops))
            if count:
                met[name] = count
    if not met:
        return program
    job.notes.append("xnnpack decompositions: " + ", ".join(f"{name} ×{count}" for name, count in met.items()) + " (targets.executorch.decompose)")
    return make_friendly(program, switches)


def _meets(node: Any, ops: set[str]) -> bool:
    """Whether the decomposition of ``ops`` acts on this node (``F.pad(mode="reflect")`` is
    ``aten.pad`` until torch decomposes it into ``reflection_pad2d``)."""
    name = _aten_name(node.target)
    if name == "pad.default" and len(node.args) > 2 and node.args[2] == "reflect":
        name = f"reflection_pad{max(len(node.args[1]) // 2, 1)}d.default"
    return name in ops


def _aten_name(target: Any) -> str:
    schema = getattr(target, "_schema", None)
    if schema is None:
        return ""
    overload = getattr(target, "_overloadname", "default")
    return f"{schema.name.split('::', 1)[-1]}.{overload}"


def _report_delegation(edge: Any, backend: str, job: StageJob) -> None:
    """Where the program runs: in report.json and bench.md always, in the summary when much
    of it stays outside the delegate. A report that cannot be made costs a log line only."""
    from modelbuild.delegation.executorch import executorch_delegation

    try:
        report = executorch_delegation(edge.exported_program(), backend)
    except Exception:  # noqa: BLE001 - the artifact is fine; only its description failed
        job.log.warning("delegation report failed", exc_info=True)
        return
    job.info["delegation"] = report.to_json()
    if report.low():
        job.notes.append(f"delegation: {report.sentence()}")


def _delegated_calls(lowered: Any) -> int:
    """How many delegate blobs the program carries (0: nothing was lowered)."""
    try:
        return sum(len(plan.delegates) for plan in lowered.executorch_program.execution_plan)
    except AttributeError:
        return -1
