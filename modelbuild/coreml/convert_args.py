"""Manifest fields to coremltools arguments (inputs, outputs, target, precision, classifier)."""

from __future__ import annotations

from typing import Any

from modelbuild.manifest.preprocess import image_preprocessing
from modelbuild.manifest.shapes import Dim

NUMPY_DTYPES = {"float32": "float32", "float16": "float16", "int32": "int32", "int64": "int64", "bool": "bool_"}
COMPUTE_UNITS = {"all": "ALL", "cpu_only": "CPU_ONLY", "cpu_and_gpu": "CPU_AND_GPU", "cpu_and_ne": "CPU_AND_NE"}


def ct_shape(ct: Any, inp: dict[str, Any], shared: dict[str, Any] | None = None) -> Any:
    """The coremltools shape of an input. ``shared`` holds one ``RangeDim`` per named dimension:
    the same object in several inputs is one symbol in the program, so coremltools knows the
    sizes are equal (two equal ranges would be two unrelated symbols)."""
    shared = {} if shared is None else shared
    if "shapes" in inp:
        default = inp.get("default_shape", inp["shapes"][0])
        return ct.EnumeratedShapes(shapes=[tuple(s) for s in inp["shapes"]], default=tuple(default))
    axes = []
    for raw in inp["shape"]:
        d = Dim.parse(raw)
        if not d.flexible:
            axes.append(d.min)
            continue
        if d.name is None or d.name not in shared:
            dim = ct.RangeDim(lower_bound=d.min, upper_bound=d.max if d.max is not None else -1, default=d.default)
            if d.name is None:
                axes.append(dim)
                continue
            shared[d.name] = dim
        axes.append(shared[d.name])
    return ct.Shape(shape=tuple(axes))


def ct_inputs(ct: Any, inputs: list[dict[str, Any]]) -> list[Any]:
    import numpy as np

    result = []
    shared: dict[str, Any] = {}
    for inp in inputs:
        shape = ct_shape(ct, inp, shared)
        if inp["kind"] == "image":
            pre = image_preprocessing(inp)
            bias: Any = list(pre.bias) if inp["color_layout"] != "GRAYSCALE" else pre.bias[0]
            result.append(ct.ImageType(name=inp["name"], shape=shape, scale=pre.scale, bias=bias, color_layout=getattr(ct.colorlayout, inp["color_layout"])))
        else:
            result.append(ct.TensorType(name=inp["name"], shape=shape, dtype=getattr(np, NUMPY_DTYPES[inp["dtype"]])))
    return result


def ct_outputs(ct: Any, outputs: list[dict[str, Any]] | None) -> list[Any] | None:
    if not outputs:
        return None
    return [
        ct.ImageType(name=o["name"], color_layout=getattr(ct.colorlayout, o["color_layout"])) if o["kind"] == "image" else ct.TensorType(name=o["name"])
        for o in outputs
    ]


def convert_kwargs(ct: Any, coreml: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "convert_to": coreml["format"],
        "minimum_deployment_target": getattr(ct.target, coreml["deployment_target"]),
        "compute_units": getattr(ct.ComputeUnit, COMPUTE_UNITS[coreml["compute_units"]]),
    }
    if coreml["format"] == "mlprogram":
        kwargs["compute_precision"] = ct.precision.FLOAT16 if coreml["precision"] == "float16" else ct.precision.FLOAT32
        kept = list(coreml.get("float32_modules") or [])
        if coreml["precision"] == "float16" and kept:
            from modelbuild.coreml.origins import inside_modules

            # coremltools' float16 pass skips the ops the selector refuses: the ops converted
            # from those modules stay float32, with casts around them.
            kwargs["compute_precision"] = ct.transform.FP16ComputePrecision(op_selector=lambda op: not inside_modules(op, kept))
    return kwargs
