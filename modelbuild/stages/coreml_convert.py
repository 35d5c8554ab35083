"""``coreml.convert``: coremltools.convert of the captured module into a raw package.

The raw package is already written deterministically (no conversion date, content-derived
identifiers), so a conversion that produces the same model stops the rebuild here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from modelbuild.errors import StageFailure
from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES
from modelbuild.stages.base import Stage, StageJob


def class_labels(model: ModelSpec) -> list[str] | None:
    meta = model.data["metadata"]
    if "classes" in meta:
        return [str(c) for c in meta["classes"]]
    if "classes_file" in meta:
        text = model.resolve_path(meta["classes_file"]).read_text(encoding="utf-8")
        return [line.strip() for line in text.splitlines() if line.strip()]
    return None


@STAGES.register
class CoreMLConvertStage(Stage):
    name = "coreml.convert"
    version = 1
    tools = ("coremltools", "torch", "numpy")
    deps = ("capture",)

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        data = model.data
        coreml = {k: v for k, v in data["targets"]["coreml"].items() if k not in ("optimize", "validate")}
        inputs = [{k: v for k, v in i.items() if k != "description"} for i in data["inputs"]]
        outputs = [{k: v for k, v in o.items() if k != "description"} for o in data.get("outputs") or []]
        params: dict[str, Any] = {"inputs": inputs, "outputs": outputs, "targets": {"coreml": coreml}}
        labels = class_labels(model)
        if "classifier" in data["metadata"]:
            # Class labels make a classifier: they change the converted program, not only its
            # description, so they belong to the conversion.
            params["metadata"] = {"classes": labels, "classifier": data["metadata"]["classifier"]}
        return params

    def run(self, job: StageJob) -> None:
        import coremltools as ct
        import torch

        from modelbuild.coreml.convert_args import convert_kwargs, ct_inputs, ct_outputs
        from modelbuild.coreml.package_io import drop_conversion_date, write_package

        params = job.node.params
        captured = job.inputs["capture"]
        source_file = json.loads((captured / "capture.json").read_text())["coreml_source"]
        if source_file.endswith(".pt2"):
            program = torch.export.load(str(captured / source_file))
            source: Any = program.run_decompositions({})
        else:
            source = torch.jit.load(str(captured / source_file), map_location="cpu")
        kwargs = convert_kwargs(ct, params["targets"]["coreml"])
        classifier = params.get("metadata", {}).get("classifier")
        if classifier:
            kwargs["classifier_config"] = ct.ClassifierConfig(params["metadata"]["classes"])
        job.log.info("coremltools.convert(%s, %s)", source_file, kwargs)
        try:
            mlmodel = ct.convert(source, inputs=ct_inputs(ct, params["inputs"]), outputs=None if classifier else ct_outputs(ct, params["outputs"]), **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise StageFailure(explain_conversion_error(exc)) from exc
        spec = mlmodel.get_spec()
        if classifier:
            _name_classifier_outputs(ct, spec, classifier)
        drop_conversion_date(spec)
        weights = Path(mlmodel.weights_dir) if params["targets"]["coreml"]["format"] == "mlprogram" else None
        write_package(spec, weights, job.out / "model.mlpackage")
        job.info["inputs"] = [i.name for i in spec.description.input]
        job.info["outputs"] = [o.name for o in spec.description.output]


def _name_classifier_outputs(ct: Any, spec: Any, classifier: dict[str, Any]) -> None:
    """coremltools names a classifier's outputs classLabel and classLabel_probs; use the manifest's."""
    description = spec.description
    wanted = {description.predictedProbabilitiesName: classifier["probabilities"],
              description.predictedFeatureName: classifier.get("label", "classLabel")}
    for old, new in wanted.items():
        if old and old != new:
            ct.utils.rename_feature(spec, old, new, rename_inputs=False, rename_outputs=True)


def explain_conversion_error(exc: Exception) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    op = re.search(r"convert function for op '([^']+)' not implemented", text)
    if op:
        return (f"coremltools cannot convert the PyTorch operator {op.group(1)!r}: swap the module that uses it with "
                f"wrapper.replace, or register a composite op in a plugin module (coremltools register_torch_op)")
    unmapped = re.search(r"Unable to map (\w+) to core (\w+)", text)
    if unmapped:
        return (f"coremltools cannot map {unmapped.group(1)} to a Core ML {unmapped.group(2)} with these input shapes "
                f"(typical for resizing to a size computed from a flexible input): use fixed or enumerated shapes, or a fixed scale factor")
    return f"coremltools.convert failed: {type(exc).__name__}: {first}"
