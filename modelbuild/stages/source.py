"""``source``: the model's snapshot and fingerprint. Its output holds the model's code and
weights as they were hashed (``tree/``), so every later stage builds the model from the same
bytes; it imports the factory and loads the weights, so an unimportable factory or mismatched
weights fail here, before anything is captured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES
from modelbuild.stages.base import Stage, StageJob
from modelbuild.usercode.discover import imported_package_versions, local_module_files
from modelbuild.usercode.source_tree import SOURCE_FILES, layout_of
from modelbuild.usercode.tree import folder_label, label_of


@STAGES.register
class SourceStage(Stage):
    name = "source"
    version = 4
    tools = ("torch",)
    warm_imports = ("torch",)

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        source = model.data["source"]
        params = {k: v for k, v in source.items() if k in ("factory", "args", "strict")}
        params["packages"] = imported_package_versions([Path(p) for p in cls.files(model).values()], [model.folder, model.root])
        labels = {key: label_of(model.resolve_path(source[key]), model.root) for key in SOURCE_FILES if key in source}
        params["layout"] = layout_of(source, labels, folder_label(model.folder, model.root))
        return {"source": params}

    @classmethod
    def files(cls, model: ModelSpec) -> dict[str, str]:
        """The model's code (its modules and every local module they import), weights and
        ``source.code``, by project-relative label: each is snapshotted and laid out in the
        output's tree, and every later stage loads the model from there."""
        source = model.data["source"]
        paths = local_module_files(user_modules(model), [model.folder, model.root])
        paths += [model.resolve_path(source[key]) for key in SOURCE_FILES if key in source]
        paths += [model.resolve_path(code) for code in source.get("code", [])]
        return {label_of(path, model.root): str(path) for path in paths}

    def run(self, job: StageJob) -> None:
        from modelbuild.manifest.shapes import fixed_shapes
        from modelbuild.torch_side.loading import build_module
        from modelbuild.usercode.source_tree import SourceTree as Tree
        from modelbuild.usercode.tree import lay_out

        layout = job.node.params["source"]["layout"]
        blobs = {field: job.files[label] for field, label in layout.items() if field != "folder"}
        lay_out({label: path for label, path in job.files.items() if label not in {layout[f] for f in blobs}}, job.out / "tree")
        tree = Tree(job.out / "tree", layout, blobs)
        if "onnx" in job.node.context["source"]:
            from modelbuild.torch_side.onnx_source import check_inputs, read_model

            shown = Path(layout["onnx"]).name
            check_inputs(read_model(tree.path("onnx"), job.where("source.onnx"), shown), job.node.context["inputs"], job.where, shown)
        module = build_module(job.node.context["source"], tree, job.where, fixed=fixed_shapes(job.node.context["inputs"]))
        state = module.state_dict()
        job.info["parameters"] = int(sum(t.numel() for t in state.values()))
        fingerprint = {
            "params": job.node.params,
            # The snapshot of every file the model comes from: new weights must reach capture.
            "files": {label: path.name for label, path in sorted(job.files.items())},
            "state_dict": {k: [list(v.shape), str(v.dtype)] for k, v in sorted(state.items())},
            "class": f"{type(module).__module__}.{type(module).__qualname__}",
        }
        (job.out / "fingerprint.json").write_text(json.dumps(fingerprint, sort_keys=True, indent=1))
        job.log.info("model %s with %d parameters", fingerprint["class"], job.info["parameters"])


def user_modules(model: ModelSpec) -> list[str]:
    """The modules of the user's Python the manifest names: the factory's, the wrapper class's
    and those of ``wrapper.replace`` classes (only the local ones are found and snapshotted)."""
    data = model.data
    modules = []
    if "factory" in data["source"]:
        modules.append(data["source"]["factory"].partition(":")[0])
    wrapper = data.get("wrapper") or {}
    if wrapper.get("class"):
        modules.append(wrapper["class"].partition(":")[0])
    for old, new in (wrapper.get("replace") or {}).items():
        modules += [old.rpartition(".")[0], new.rpartition(".")[0]]
    return [m for m in modules if m]
