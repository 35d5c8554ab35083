"""``coreml.package``: metadata, descriptions and provenance stamped into the final package.

It edits the protobuf directly and never imports coremltools, so changing a description
costs a fraction of a second instead of a conversion.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from modelbuild import __version__
from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES
from modelbuild.stages.base import Stage, StageJob

PREVIEW_KEY = "com.apple.coreml.model.preview.type"
PREVIEW_PARAMS = "com.apple.coreml.model.preview.params"
PREVIEW_TYPES = {
    "segmentation": "imageSegmenter",
    "classification": "imageClassifier",
    "detection": "objectDetector",
    "depth": "depthEstimation",
    "pose": "poseEstimation",
    "style-transfer": "styleTransfer",
}


def conversion_date() -> str | None:
    """The date stamped in the package: from SOURCE_DATE_EPOCH, never the clock."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None
    return time.strftime("%Y-%m-%d", time.gmtime(int(epoch)))


@STAGES.register
class CoreMLPackageStage(Stage):
    name = "coreml.package"
    # v2: class labels of a non-classifier in user-defined metadata; v3: the Neural Engine report
    version = 3
    deps = ("coreml.optimize",)
    artifacts = ("{model}.mlpackage",)
    heavy = False
    warm_imports = ("modelbuild.coreml.package_io", "modelbuild.delegation.coreml")  # run in a handed-over build's fork

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        data = model.data
        meta = {k: v for k, v in data["metadata"].items() if k not in ("classes_file",)}
        if "classes_file" in data["metadata"]:
            from modelbuild.manifest.metadata import class_labels

            meta["classes"] = class_labels(model)
        return {
            "version": data["version"],
            "metadata": meta,
            "descriptions": {
                "inputs": {i["name"]: i.get("description", "") for i in data["inputs"]},
                "outputs": {o["name"]: o.get("description", "") for o in data.get("outputs") or []},
            },
            "build": {"conversion_date": conversion_date(), "modelbuild": __version__},
        }

    def run(self, job: StageJob) -> None:
        from modelbuild.coreml.package_io import DATE_KEY, rewrite_package

        params = job.node.params
        meta = params["metadata"]

        def edit(spec: Any) -> None:
            description = spec.description
            description.metadata.shortDescription = meta.get("description", "")
            description.metadata.author = meta.get("author", "")
            description.metadata.license = meta.get("license", "")
            description.metadata.versionString = params["version"]
            user = description.metadata.userDefined
            for key, value in sorted(meta.get("user", {}).items()):
                user[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
            user["com.modelbuild.version"] = params["build"]["modelbuild"]
            if params["build"]["conversion_date"]:
                user[DATE_KEY] = params["build"]["conversion_date"]
            if "preview" in meta:
                user[PREVIEW_KEY] = PREVIEW_TYPES[meta["preview"]]
                if meta["preview"] == "segmentation" and meta.get("classes"):
                    user[PREVIEW_PARAMS] = json.dumps({"labels": meta["classes"]})
            if meta.get("classes") and "classifier" not in meta and meta.get("preview") != "segmentation":
                # Not a classifier, so no class-label field takes them: never drop them silently.
                user["classes"] = json.dumps(meta["classes"])
                job.notes.append(
                    f"metadata.classes ({len(meta['classes'])} labels) stored as the user-defined metadata 'classes' (JSON): "
                    "add metadata.classifier: {probabilities: <output>} to make a Core ML classifier that returns labels"
                )
            for feature in description.input:
                feature.shortDescription = params["descriptions"]["inputs"].get(feature.name, feature.shortDescription)
            for feature in description.output:
                feature.shortDescription = params["descriptions"]["outputs"].get(feature.name, feature.shortDescription)

        rewrite_package(job.inputs["coreml.optimize"] / "model.mlpackage", job.out / f"{job.node.model}.mlpackage", edit)
        _report_neural_engine(job)


def _report_neural_engine(job: StageJob) -> None:
    """What in the program commonly keeps it off the Neural Engine (a static estimate: Linux
    cannot ask a device). In report.json and bench.md; in the summary when much is."""
    from modelbuild.coreml.package_io import read_spec
    from modelbuild.delegation.coreml import package_delegation

    report = package_delegation(read_spec(job.out / f"{job.node.model}.mlpackage"))
    job.info["delegation"] = report.to_json()
    if report.low():
        job.notes.append(f"Neural Engine: {report.sentence()}")
