"""``onnx.package``: the manifest's metadata stamped into the exported ONNX model.

A protobuf edit with ``onnx`` only (no torch): editing a description re-runs this stage in
the coordinator in a fraction of a second, never the export, and never the verification,
which reads the export's model (metadata does not compute).
"""

from __future__ import annotations

import json
from typing import Any

from modelbuild import __version__
from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES
from modelbuild.stages.base import Stage, StageJob


@STAGES.register
class OnnxPackageStage(Stage):
    name = "onnx.package"
    version = 2  # class labels in metadata_props
    tools = ("onnx",)
    deps = ("onnx.export",)
    artifacts = ("{model}.onnx",)
    heavy = False

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        from modelbuild.manifest.metadata import class_labels

        meta = model.data["metadata"]
        classes = class_labels(model)
        return {
            "version": model.data["version"],
            "modelbuild": __version__,
            "metadata": {k: meta[k] for k in ("description", "author", "license", "user") if k in meta},
            # ONNX has no class-label field: the labels go into metadata_props, as JSON.
            **({"classes": classes} if classes else {}),
        }

    def run(self, job: StageJob) -> None:
        import onnx

        params = job.node.params
        meta = params["metadata"]
        model = onnx.load(str(job.inputs["onnx.export"] / "model.onnx"))
        model.doc_string = meta.get("description", "")
        props = {
            "version": params["version"],
            "com.modelbuild.version": params["modelbuild"],
            **{k: str(meta[k]) for k in ("author", "license") if k in meta},
            **{f"user.{k}": str(v).lower() if isinstance(v, bool) else str(v) for k, v in meta.get("user", {}).items()},
        }
        if "classes" in params:
            props["classes"] = json.dumps(params["classes"])
            job.notes.append(f"metadata.classes ({len(params['classes'])} labels) stored as the metadata property 'classes' (JSON)")
        del model.metadata_props[:]
        for key in sorted(props):
            model.metadata_props.add(key=key, value=props[key])
        (job.out / f"{job.node.model}.onnx").write_bytes(model.SerializeToString(deterministic=True))
