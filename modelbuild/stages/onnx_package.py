"""``onnx.package``: the manifest's metadata stamped into the exported ONNX model.

A protobuf edit with ``onnx`` only (no torch): editing a description re-runs this stage in
the coordinator in a fraction of a second, never the export, and never the verification,
which reads the export's model (metadata does not compute).
"""

from __future__ import annotations

from typing import Any

from modelbuild import __version__
from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES
from modelbuild.stages.base import Stage, StageJob


@STAGES.register
class OnnxPackageStage(Stage):
    name = "onnx.package"
    version = 1
    tools = ("onnx",)
    deps = ("onnx.export",)
    artifacts = ("{model}.onnx",)
    heavy = False

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        meta = model.data["metadata"]
        return {
            "version": model.data["version"],
            "modelbuild": __version__,
            "metadata": {k: meta[k] for k in ("description", "author", "license", "user") if k in meta},
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
        del model.metadata_props[:]
        for key in sorted(props):
            model.metadata_props.add(key=key, value=props[key])
        (job.out / f"{job.node.model}.onnx").write_bytes(model.SerializeToString(deterministic=True))
