"""``source``: the model's fingerprint. It imports the factory and loads the weights, so an
unimportable factory or mismatched weights fail here, before anything is captured."""

from __future__ import annotations

import ast
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES
from modelbuild.stages.base import Stage, StageJob


@STAGES.register
class SourceStage(Stage):
    name = "source"
    version = 2
    tools = ("torch",)

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        source = model.data["source"]
        params = {k: v for k, v in source.items() if k in ("factory", "args", "strict")}
        params["packages"] = imported_package_versions([Path(p) for p in cls.files(model).values()], model)
        return {"source": params}

    @classmethod
    def files(cls, model: ModelSpec) -> dict[str, str]:
        source = model.data["source"]
        files: dict[str, str] = {}
        if "factory" in source:
            module_file = find_local_module(source["factory"].partition(":")[0], model)
            if module_file is not None:
                files[_label(module_file, model)] = str(module_file)
        for key in ("weights", "torchscript", "exported_program"):
            if key in source:
                files[source[key]] = str(model.resolve_path(source[key]))
        for code in source.get("code", []):
            files[code] = str(model.resolve_path(code))
        return files

    def run(self, job: StageJob) -> None:
        from modelbuild.torch_side.loading import build_module

        source = job.node.context["source"]
        module = build_module(source, Path(job.node.context["folder"]), job.where)
        state = module.state_dict()
        job.info["parameters"] = int(sum(t.numel() for t in state.values()))
        from modelbuild.store.hashing import hash_tree

        fingerprint = {
            "params": job.node.params,
            # The content of every file the model comes from: new weights must reach capture.
            "files": {label: hash_tree(Path(path)) for label, path in sorted(job.node.files.items())},
            "state_dict": {k: [list(v.shape), str(v.dtype)] for k, v in sorted(state.items())},
            "class": f"{type(module).__module__}.{type(module).__qualname__}",
        }
        (job.out / "fingerprint.json").write_text(json.dumps(fingerprint, sort_keys=True, indent=1))
        job.log.info("model %s with %d parameters", fingerprint["class"], job.info["parameters"])


def _label(path: Path, model: ModelSpec) -> str:
    try:
        return path.relative_to(model.folder).as_posix()
    except ValueError:
        return path.name


def find_local_module(module: str, model: ModelSpec) -> Path | None:
    """The file of ``module`` in the manifest's folder or the project root, without importing it."""
    parts = module.split(".")
    for base in (model.folder, model.root):
        candidate = base.joinpath(*parts)
        for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
            if path.is_file():
                return path.resolve()
    return None


def imported_package_versions(files: list[Path], model: ModelSpec) -> dict[str, str]:
    """Versions of the installed distributions the model's code imports (torch, transformers…).

    Upgrading one of them can change what the factory builds, so it is part of the key.
    """
    names: set[str] = set()
    for path in files:
        sources = sorted(path.rglob("*.py")) if path.is_dir() else ([path] if path.suffix == ".py" else [])
        for py in sources:
            names |= _top_level_imports(py.read_bytes())
    versions = {}
    for name in sorted(names):
        if name in sys.stdlib_module_names or any((base / name).exists() or (base / f"{name}.py").exists() for base in (model.folder, model.root)):
            continue
        version = _distribution_version(name)
        if version:
            versions[name] = version
    return versions


@lru_cache(maxsize=256)
def _top_level_imports(source: bytes) -> frozenset[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return frozenset()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return frozenset(names)


@lru_cache(maxsize=256)
def _distribution_version(import_name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(import_name)
    except metadata.PackageNotFoundError:
        pass
    dists = _packages_distributions().get(import_name)
    if dists:
        try:
            return f"{dists[0]} {metadata.version(dists[0])}"
        except metadata.PackageNotFoundError:
            return None
    return None


@lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    from importlib import metadata

    return metadata.packages_distributions()
