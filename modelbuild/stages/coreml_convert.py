"""``coreml.convert``: coremltools.convert of the captured module into a raw package.

The raw package is already written deterministically (no conversion date, content-derived
identifiers), so a conversion that produces the same model stops the rebuild here.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from modelbuild.errors import StageFailure
from modelbuild.manifest.metadata import class_labels
from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES
from modelbuild.stages.base import Stage, StageJob
from modelbuild.usercode.plugins import plugin_params


@STAGES.register
class CoreMLConvertStage(Stage):
    name = "coreml.convert"
    version = 4  # v4: writes ops.json, each op's torch module, for the op-level locator
    tools = ("coremltools", "torch", "numpy")
    warm_imports = ("coremltools", "coremltools.converters.mil.frontend.torch")
    deps = ("capture",)

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        data = model.data
        from modelbuild.coreml.compat import phase_switches

        coreml = {k: v for k, v in data["targets"]["coreml"].items() if k not in ("optimize", "validate", "compat")}
        coreml["compat"] = phase_switches(data["targets"]["coreml"]["compat"], "convert")
        inputs = [{k: v for k, v in i.items() if k != "description"} for i in data["inputs"]]
        outputs = [{k: v for k, v in o.items() if k != "description"} for o in data.get("outputs") or []]
        params: dict[str, Any] = {"inputs": inputs, "outputs": outputs, "targets": {"coreml": coreml}, **plugin_params(model)}
        labels = class_labels(model)
        if "classifier" in data["metadata"]:
            # Class labels make a classifier: they change the converted program, not only its
            # description, so they belong to the conversion.
            params["metadata"] = {"classes": labels, "classifier": data["metadata"]["classifier"]}
        return params

    @classmethod
    def files(cls, model: ModelSpec) -> dict[str, str]:
        from modelbuild.usercode.plugins import plugin_files

        return plugin_files(model)

    def run(self, job: StageJob) -> None:
        import coremltools as ct
        import torch

        from modelbuild.coreml.convert_args import convert_kwargs, ct_inputs, ct_outputs

        params = job.node.params
        captured = job.inputs["capture"]
        source_file = json.loads((captured / "capture.json").read_text())["coreml_source"]
        if source_file.endswith(".pt2"):
            program = torch.export.load(str(captured / source_file))
            source: Any = program.run_decompositions({})
        else:
            source = torch.jit.load(str(captured / source_file), map_location="cpu")
        from modelbuild.coreml.compat import enabled, installed
        from modelbuild.usercode.plugins import import_plugins

        import_plugins(params, job.files, job.imports_dir, job.where)
        options = {k: v for k, v in params["targets"]["coreml"].items() if k != "compat"}
        kwargs = convert_kwargs(ct, options)
        classifier = params.get("metadata", {}).get("classifier")
        if classifier:
            kwargs["classifier_config"] = ct.ClassifierConfig(params["metadata"]["classes"])
        job.log.info("coremltools.convert(%s, %s)", source_file, kwargs)
        from modelbuild.coreml.determinism import fresh_conversion_state

        fresh_conversion_state()  # the package's bytes must not depend on this worker's history
        # coremltools saves what it converted before handing it back; by default into a /tmp
        # folder that a collected MLModel deletes. Saved in the store's scratch area instead, the
        # package is this stage's alone, and a killed stage's leftovers go with the next clean.
        with tempfile.TemporaryDirectory(prefix="coreml-convert-", dir=job.out.parent) as saved:
            try:
                with installed(enabled(params["targets"]["coreml"]["compat"], "convert")):
                    mlmodel = ct.convert(
                        source,
                        inputs=ct_inputs(ct, params["inputs"]),
                        outputs=None if classifier else ct_outputs(ct, params["outputs"]),
                        package_dir=str(Path(saved) / "converted.mlpackage") if options["format"] == "mlprogram" else None,
                        **kwargs,
                    )
            except Exception as exc:  # noqa: BLE001
                raise StageFailure(explain_conversion_error(exc, source, params["targets"]["coreml"]["compat"])) from exc
            self._write(job, ct, mlmodel, classifier, options)

    def _write(self, job: StageJob, ct: Any, mlmodel: Any, classifier: dict[str, Any] | None, options: dict[str, Any]) -> None:
        from modelbuild.coreml.package_io import drop_conversion_date, write_package

        spec = mlmodel.get_spec()
        if classifier:
            _name_classifier_outputs(ct, spec, classifier)
        drop_conversion_date(spec)
        weights = Path(mlmodel.weights_dir) if options["format"] == "mlprogram" else None
        write_package(spec, weights, job.out / "model.mlpackage")
        from modelbuild.coreml.origins import op_origins

        # Each op's torch module, for the op-level locator (mil.explain): not part of the artifact.
        (job.out / "ops.json").write_text(json.dumps(op_origins(mlmodel), indent=1, sort_keys=True) + "\n")
        job.info["inputs"] = [i.name for i in spec.description.input]
        job.info["outputs"] = [o.name for o in spec.description.output]


def _name_classifier_outputs(ct: Any, spec: Any, classifier: dict[str, Any]) -> None:
    """coremltools names a classifier's outputs classLabel and classLabel_probs; use the manifest's."""
    description = spec.description
    wanted = {description.predictedProbabilitiesName: classifier["probabilities"], description.predictedFeatureName: classifier.get("label", "classLabel")}
    for old, new in wanted.items():
        if old and old != new:
            ct.utils.rename_feature(spec, old, new, rename_inputs=False, rename_outputs=True)


def explain_conversion_error(exc: Exception, source: Any = None, compat: dict[str, bool] | None = None) -> str:
    """One actionable message: the operator, where the model uses it when the graph says, and
    the two ways out (a plugin with a composite op, or wrapper.replace)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    op = re.search(r"convert function for op '([^']+)' not implemented", text)
    if op:
        name = op.group(1)
        where = operator_location(source, name)
        return (
            f"coremltools cannot convert the PyTorch operator {name!r}{where}. Either add a plugin: a module listed under "
            f"plugins: that registers a composite op, e.g. @register_torch_op def {name.split('.')[0]}(context, node): ... "
            f"built from existing MIL ops (see docs/plugins.md), or swap the module that uses it with wrapper.replace"
        )
    unmapped = re.search(r"Unable to map (\w+) to core (\w+)", text)
    if unmapped:
        off = compat is not None and not compat.get("resize_to_input", True)
        fix = (
            "the built-in fix for this is switched off: remove targets.coreml.compat.resize_to_input: false"
            if off
            else "use fixed or enumerated shapes, or a fixed scale factor"
        )
        return f"coremltools cannot map {unmapped.group(1)} to a Core ML {unmapped.group(2)} with these input shapes: {fix}"
    if "needs the iOS17 resize op" in text:
        return first
    return f"coremltools.convert failed: {type(exc).__name__}: {first}"


def operator_location(source: Any, op: str) -> str:
    """ " (in module features.3.act)" from the captured graph's scopes, when it keeps them."""
    try:
        graph = source.inlined_graph if hasattr(source, "inlined_graph") else source.graph
        scopes = sorted({node.scopeName() for node in graph.nodes() if node.kind().split("::")[-1] == op and node.scopeName()})
    except Exception:  # noqa: BLE001 - a location is a courtesy; the message stands without it
        return ""
    if not scopes:
        return ""
    path = scopes[0].replace("__module.", "").split("/")[-1]
    return f" (in module {path})"
