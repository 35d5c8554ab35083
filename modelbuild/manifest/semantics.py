"""Rules the JSON Schema cannot express: ranges, cross-field constraints, files that must exist.
Each target checks its own table (``Target.check``): the Core ML limits a user should hear
about before a conversion starts live with the Core ML target."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from modelbuild.errors import problem
from modelbuild.manifest.shapes import Dim
from modelbuild.manifest.spec import ModelSpec

QUALNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def check_model(model: ModelSpec) -> list[str]:
    problems: list[str] = []

    def fail(field: str, message: str) -> None:
        problems.append(problem(model.where(field), message))

    data = model.data
    if not _check_dims(data, fail):
        return problems  # the shape checks below assume every named dimension resolved
    _check_source(model, data["source"], fail)
    _check_wrapper(data, fail)
    _check_inputs(data["inputs"], fail)
    output_names = _check_outputs(data.get("outputs"), fail)
    _check_metadata(model, data["metadata"], output_names, fail)
    from modelbuild.targets import TARGETS

    for name in data["targets"]:
        TARGETS.get(name).check(model, fail)
    _check_plugins(model, fail)
    _check_code_inside(model, fail)
    if data["capture"]["trace_submodules"] and data["capture"]["mode"] != "script":
        fail("capture.trace_submodules", f"expected capture.mode 'script' for trace_submodules, got mode {data['capture']['mode']!r}")
    if "data" in data["validate"]:
        _require_file(model, "validate.data", data["validate"]["data"], fail)
    for block in ("validate", "benchmark"):
        _check_shape_choices(data["inputs"], data[block]["shapes"], block, fail)
    for index, backend in enumerate(data["benchmark"].get("backends", [])):
        if backend != "torch" and backend not in data["targets"]:
            fail(
                f"benchmark.backends[{index}]",
                f"expected 'torch' or a target of this model ({', '.join(sorted(data['targets']))}), got {backend!r}; add targets.{backend} to build it",
            )
    return problems


def _check_shape_choices(inputs: list[dict[str, Any]], choices: list[Any], block: str, fail: Any) -> None:
    """Concrete shapes must name inputs and fit what each input declares."""
    by_name = {i["name"]: i for i in inputs}
    for index, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        for name, shape in choice.items():
            at = f"{block}.shapes[{index}].{name}"
            if name not in by_name:
                fail(at, f"expected an input name ({', '.join(by_name)}), got {name!r}")
                continue
            inp = by_name[name]
            if "shapes" in inp:
                if [list(s) for s in inp["shapes"]].count(list(shape)) == 0:
                    fail(at, f"expected one of the enumerated shapes {inp['shapes']}, got {shape}")
                continue
            declared = [Dim.parse(d) for d in inp["shape"]]
            if len(shape) != len(declared):
                fail(at, f"expected {len(declared)} dimensions, got {len(shape)}: {shape}")
                continue
            for axis, (size, dim) in enumerate(zip(shape, declared)):
                if size < dim.min or (dim.max is not None and size > dim.max):
                    bound = f"{dim.min}..{dim.max}" if dim.max is not None else f"{dim.min} or more"
                    fail(at, f"expected dimension {axis} within {bound}, got {size}")
                    break
        _check_shared_sizes(inputs, choice, f"{block}.shapes[{index}]", fail)


def _check_shared_sizes(inputs: list[dict[str, Any]], choice: dict[str, Any], at: str, fail: Any) -> None:
    """Inputs that share a named dimension get one size in a concrete shape choice (an input the
    choice leaves out is at its default shape)."""
    sizes: dict[str, tuple[int, str]] = {}
    for inp in inputs:
        if "shape" not in inp:
            continue
        shape = choice.get(inp["name"])
        declared = [Dim.parse(d) for d in inp["shape"]]
        if shape is not None and len(shape) != len(declared):
            continue  # reported above
        for axis, dim in enumerate(declared):
            if dim.name is None:
                continue
            size = shape[axis] if shape is not None else dim.default
            source = f"{inp['name']}[{axis}]" + ("" if shape is not None else " (its default)")
            first = sizes.setdefault(dim.name, (size, source))
            if first[0] != size:
                fail(at, f"expected one size for dimension {dim.name!r}, got {first[0]} for {first[1]} and {size} for {source}")
                return


def _require_file(model: ModelSpec, field: str, relative: str, fail: Any, folder: bool = False) -> None:
    """A declared input must exist, be a regular file (a FIFO or a device would hang or never
    end a read; a folder only where one is allowed) and lie inside the project: it is copied
    into the cache, which may be shared."""
    import stat

    from modelbuild.store.signature import file_kind
    from modelbuild.usercode.tree import OutsideProject, label_of

    path = model.resolve_path(relative)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        fail(field, f"file not found: {relative!r} (looked in {model.folder})")
        return
    except OSError as exc:
        fail(field, f"cannot read {relative!r}: {exc.strerror}")
        return
    if not folder and stat.S_ISDIR(mode):
        fail(field, f"expected a file, got the folder {relative!r}")
        return
    if not (stat.S_ISREG(mode) or (folder and stat.S_ISDIR(mode))):
        fail(field, f"expected a regular file{' or a folder' if folder else ''}, got {file_kind(mode)}: {relative!r}")
        return
    try:
        label_of(Path(os.path.normpath(model.folder / relative)), model.root)
        label_of(path, model.root)
    except OutsideProject:
        fail(
            field,
            f"expected a path inside the project ({model.root}), got {relative!r}, which resolves to {path}; "
            "copy the file into the project (links that lead out of it are not followed)",
        )
        return
    if stat.S_ISDIR(mode):
        from modelbuild.store.signature import walk_files

        for inner in walk_files(path):  # a link inside a declared folder may lead out too
            try:
                label_of(inner, model.root)
            except OutsideProject:
                fail(
                    field,
                    f"expected files inside the project ({model.root}), got {inner.relative_to(path).as_posix()!r} in "
                    f"{relative!r}, which resolves to {inner.resolve()}; links that lead out of the project are not followed",
                )
                return


def _check_source(model: ModelSpec, source: dict[str, Any], fail: Any) -> None:
    kinds = [k for k in ("factory", "torchscript", "exported_program", "onnx") if k in source]
    if len(kinds) != 1:
        found = "none" if not kinds else " and ".join(kinds)
        fail("source", f"expected exactly one of factory, torchscript, exported_program, onnx, got {found}")
        return
    if kinds[0] == "factory":
        _check_factory_module(model, source["factory"], fail)
    else:
        for key in ("weights", "args"):
            if key in source:
                fail(f"source.{key}", f"expected {key} only with source.factory, got it with source.{kinds[0]}")
        _require_file(model, f"source.{kinds[0]}", source[kinds[0]], fail)
        if kinds[0] == "onnx" and not source["onnx"].endswith(".onnx"):
            fail("source.onnx", f"expected an .onnx file, got {source['onnx']!r}")
    if "weights" in source:
        weights = source["weights"]
        if not weights.endswith((".safetensors", ".pt", ".pth", ".bin")):
            fail("source.weights", f"expected a .safetensors, .pt, .pth or .bin file, got {weights!r}")
        else:
            _require_file(model, "source.weights", weights, fail)
    for index, code in enumerate(source.get("code", [])):
        _require_file(model, f"source.code[{index}]", code, fail, folder=True)


def _check_factory_module(model: ModelSpec, factory: str, fail: Any) -> None:
    """Find the factory's module without importing it (importing it would import torch)."""
    import importlib.util

    from modelbuild.usercode.discover import find_local_module

    module = factory.partition(":")[0]
    if find_local_module(module, [model.folder, model.root]) is not None:
        return
    top = module.split(".")[0]
    local_top = any((base / top).is_dir() for base in (model.folder, model.root))
    if local_top or importlib.util.find_spec(top) is None:
        fail("source.factory", f"cannot find module {module!r} (looked in {model.folder}, {model.root} and the installed packages)")


def _check_code_inside(model: ModelSpec, fail: Any) -> None:
    """The local modules the model's code imports are snapshotted like declared files: each
    must lie inside the project (a module symlinked out of it is refused, not followed)."""
    from modelbuild.stages.source import user_modules
    from modelbuild.usercode.discover import local_module_files
    from modelbuild.usercode.tree import OutsideProject, label_of

    for field, modules in (("source.factory", user_modules(model)), ("plugins", list(model.data["plugins"]))):
        for path in local_module_files(modules, [model.folder, model.root]):
            try:
                label_of(path, model.root)
            except OutsideProject:
                fail(
                    field,
                    f"expected the model's code inside the project ({model.root}), got {path}, which resolves to "
                    f"{path.resolve()}; copy the module into the project (links that lead out of it are not followed)",
                )
                return


def _check_dims(data: dict[str, Any], fail: Any) -> bool:
    """Named dimensions: each declared one is a valid range, each reference names a declared
    one, and one name means one range wherever it is used (inline ``name:`` included), so that
    every converter can give the inputs that share it one symbol."""
    ok = True
    declared = data.get("dims") or {}
    for name, raw in declared.items():
        dim = Dim.parse(raw)
        if dim.max is not None and dim.min > dim.max:
            fail(f"dims.{name}", f"expected min <= max, got min {dim.min} > max {dim.max}")
            ok = False
        elif not (dim.min <= dim.default and (dim.max is None or dim.default <= dim.max)):
            fail(f"dims.{name}.default", f"expected a default within [{dim.min}, {'unbounded' if dim.max is None else dim.max}], got {dim.default}")
            ok = False
    seen: dict[str, tuple[Dim, str]] = {}
    unnamed: dict[str, str] = {}
    for i, inp in enumerate(data.get("inputs", [])):
        for j, raw in enumerate(inp.get("shape", [])):
            at = f"inputs[{i}].shape[{j}]"
            if isinstance(raw, str):
                known = ", ".join(sorted(declared)) or "none"
                fail(at, f"expected a dimension declared under dims (declared: {known}), got {raw!r}")
                ok = False
                continue
            dim = Dim.parse(raw)
            if dim.name is None:
                unnamed[f"{inp['name']}_{j}"] = at
                continue
            first = seen.setdefault(dim.name, (dim, at))
            if (first[0].min, first[0].max, first[0].default) != (dim.min, dim.max, dim.default):
                fail(
                    at,
                    f"expected dimension {dim.name!r} to be {_range_text(first[0])} as at {first[1]}, got {_range_text(dim)}; "
                    "declare it once under dims and use its name",
                )
                ok = False
    for name, (_dim, at) in seen.items():
        if name in unnamed:
            fail(at, f"expected a dimension name other than {name!r}: it is the generated name of {unnamed[name]}; rename it")
            ok = False
    return ok


def _range_text(dim: Dim) -> str:
    return f"{{min: {dim.min}, max: {'unbounded' if dim.max is None else dim.max}, default: {dim.default}}}"


def _check_wrapper(data: dict[str, Any], fail: Any) -> None:
    for old, new in data["wrapper"]["replace"].items():
        for value in (old, new):
            if not QUALNAME.match(value):
                fail(f"wrapper.replace.{old}", f"expected a class path like 'torch.nn.ReLU', got {value!r}")


def _check_inputs(inputs: list[dict[str, Any]], fail: Any) -> set[str]:
    names: set[str] = set()
    for i, inp in enumerate(inputs):
        at = f"inputs[{i}]"
        if inp["name"] in names:
            fail(f"{at}.name", f"input name {inp['name']!r} is used twice")
        names.add(inp["name"])
        if ("shape" in inp) == ("shapes" in inp):
            fail(at, "expected exactly one of shape or shapes")
            continue
        if "shape" in inp:
            if "default_shape" in inp:
                fail(f"{at}.default_shape", "expected default_shape only with enumerated shapes")
            dims = []
            for j, raw in enumerate(inp["shape"]):
                dim = Dim.parse(raw)
                dims.append(dim)
                where = f"{at}.shape[{j}]"
                if dim.max is not None and dim.min > dim.max:
                    fail(where, f"expected min <= max, got min {dim.min} > max {dim.max}")
                elif not (dim.min <= dim.default and (dim.max is None or dim.default <= dim.max)):
                    top = "unbounded" if dim.max is None else dim.max
                    fail(f"{where}.default", f"expected a default within [{dim.min}, {top}], got {dim.default}")
            rank = len(dims)
            channels = dims[1] if rank > 1 else None
        else:
            shapes = inp["shapes"]
            rank = len(shapes[0])
            if any(len(s) != rank for s in shapes):
                fail(f"{at}.shapes", f"expected every enumerated shape to have rank {rank}, got ranks {sorted({len(s) for s in shapes})}")
                continue
            if "default_shape" in inp and inp["default_shape"] not in shapes:
                fail(f"{at}.default_shape", f"expected one of the enumerated shapes, got {inp['default_shape']}")
            values = {s[1] for s in shapes} if rank > 1 else set()
            channels = Dim(min(values), max(values), min(values)) if values else None
        _check_size(inp, at, fail)
        if inp["kind"] == "image":
            _check_image(inp, at, rank, channels, fail)
        elif any(k in inp for k in ("scale", "bias", "normalize", "color_layout")):
            fail(at, "expected scale, bias, normalize and color_layout only with kind: image")
        if inp["kind"] == "image" and "values" in inp:
            fail(f"{at}.values", "expected values only with kind: tensor (image samples are random pixels)")
        if "range" in inp and inp["range"][0] > inp["range"][1]:
            fail(f"{at}.range", f"expected [low, high] with low <= high, got {inp['range']}")
        elif "range" in inp and inp.get("dtype", "float32") in ("int32", "int64") and inp["range"][0] >= inp["range"][1]:
            fail(f"{at}.range", f"expected [low, high) with low < high for integer inputs (high is exclusive), got {inp['range']}")
    return names


MAX_ELEMENTS = 1 << 28  # 1 GiB of float32 in one sample: beyond that, sample generation would exhaust memory


def _check_size(inp: dict[str, Any], at: str, fail: Any) -> None:
    """Every shape a sample is made at (default, min, max) must fit in memory."""
    import math

    from modelbuild.manifest.shapes import shape_at

    for which in ("default", "max"):
        try:
            shape = shape_at(inp, which)
        except (KeyError, TypeError, ValueError):
            return  # reported by the shape checks
        count = math.prod(shape)
        if count > MAX_ELEMENTS:
            fail(
                f"{at}.shape",
                f"expected at most {MAX_ELEMENTS} elements per sample at the {which} shape, got {count} ({shape}); samples of that size would exhaust memory",
            )
            return


def _check_image(inp: dict[str, Any], at: str, rank: int, channels: Dim | None, fail: Any) -> None:
    if "dtype" in inp:
        fail(f"{at}.dtype", "expected no dtype on an image input (images are 8-bit pixels)")
    want = 1 if inp["color_layout"] == "GRAYSCALE" else 3
    if rank != 4 or channels is None or channels.flexible or channels.min != want:
        with_channels = f" with {channels.min} channels" if channels and not channels.flexible else ""
        fail(f"{at}.shape", f"expected an image shape [N, {want}, H, W] for color_layout {inp['color_layout']}, got rank {rank}{with_channels}")
    if "normalize" in inp:
        if "scale" in inp or "bias" in inp:
            fail(f"{at}.normalize", "expected either normalize or scale/bias, got both")
        for key in ("mean", "std"):
            values = inp["normalize"][key]
            if len(values) not in (1, want):
                fail(f"{at}.normalize.{key}", f"expected 1 or {want} values, got {len(values)}")
        if any(s <= 0 for s in inp["normalize"]["std"]):
            fail(f"{at}.normalize.std", f"expected positive values, got {inp['normalize']['std']}")
    elif isinstance(inp.get("bias"), list) and len(inp["bias"]) not in (1, want):
        fail(f"{at}.bias", f"expected 1 or {want} values for color_layout {inp['color_layout']}, got {len(inp['bias'])}")


def _check_outputs(outputs: list[dict[str, Any]] | None, fail: Any) -> set[str]:
    names: set[str] = set()
    for i, out in enumerate(outputs or []):
        if out["name"] in names:
            fail(f"outputs[{i}].name", f"output name {out['name']!r} is used twice")
        names.add(out["name"])
        if out["kind"] != "image" and "color_layout" in out:
            fail(f"outputs[{i}].color_layout", "expected color_layout only with kind: image")
    return names


def _check_metadata(model: ModelSpec, meta: dict[str, Any], outputs: set[str], fail: Any) -> None:
    if "classes" in meta and "classes_file" in meta:
        fail("metadata.classes_file", "expected either classes or classes_file, got both")
    if "classes_file" in meta:
        _require_file(model, "metadata.classes_file", meta["classes_file"], fail)
    if "classifier" in meta:
        if "classes" not in meta and "classes_file" not in meta:
            fail("metadata.classifier", "expected metadata.classes or metadata.classes_file with a classifier")
        probs = meta["classifier"]["probabilities"]
        if outputs and probs not in outputs:
            fail("metadata.classifier.probabilities", f"expected the name of an output ({', '.join(sorted(outputs))}), got {probs!r}")


def _check_plugins(model: ModelSpec, fail: Any) -> None:
    """Found without importing them: a plugin imports coremltools, which check never does."""
    import importlib.util

    from modelbuild.usercode.discover import find_local_module

    for index, name in enumerate(model.data["plugins"]):
        if find_local_module(name, [model.folder, model.root]) is None and importlib.util.find_spec(name.split(".")[0]) is None:
            fail(f"plugins[{index}]", f"cannot find module {name!r} (looked in {model.folder}, {model.root} and the installed packages)")
