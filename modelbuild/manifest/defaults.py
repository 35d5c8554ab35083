"""Built-in defaults, applied after project defaults so that every key is computed from
fully resolved data: writing ``mode: trace`` or leaving it out must give the same build."""

from __future__ import annotations

import copy
from typing import Any

from modelbuild.manifest.shapes import has_unbounded

VALIDATE = {"samples": 2, "shapes": ["default", "min", "max"], "atol": 1e-3, "rtol": 1e-3, "on_failure": "error"}
BENCHMARK = {"runs": 100, "warmup": 10, "shapes": ["default"], "threads": 1}
TARGET_OPTIONS = {"onnx": {"opset": 18, "fixed_shapes": False}, "executorch": {"backend": "xnnpack", "fixed_shapes": False, "unbounded_max": 1024},
                  "torchscript": {"lite": False}}
QUANTIZE = {"executorch": {"dtype": "int8", "per_channel": True, "calibration_samples": 16},
            "onnx": {"dtype": "int8", "mode": "dynamic", "per_channel": True, "calibration_samples": 16}}
FLOAT16_TOLERANCE = {"atol": 5e-2, "rtol": 5e-2}
NEURALNETWORK_MAX = {"iOS": 15, "macOS": 12, "watchOS": 8, "tvOS": 15}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` wins; nested tables merge; lists are replaced, never concatenated."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_defaults(model: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(model)
    data.setdefault("version", "0.0.0")
    data["version"] = str(data["version"])
    source = data.setdefault("source", {})
    if "factory" in source:
        source.setdefault("args", {})
        source.setdefault("strict", True)
    source.setdefault("code", [])
    wrapper = data.setdefault("wrapper", {})
    wrapper.setdefault("replace", {})
    capture = data.setdefault("capture", {})
    capture.setdefault("mode", "trace")
    capture.setdefault("trace_submodules", [])
    capture.setdefault("check", True)
    for inp in data.get("inputs", []):
        kind = inp.setdefault("kind", "tensor")
        if kind == "image":
            inp.setdefault("color_layout", "RGB")
            if "normalize" not in inp:
                inp.setdefault("scale", 1.0)
                inp.setdefault("bias", 0.0)
        else:
            inp.setdefault("dtype", "float32")
    for out in data.get("outputs", []) or []:
        kind = out.setdefault("kind", "tensor")
        if kind == "image":
            out.setdefault("color_layout", "RGB")
    data.setdefault("prepare", {})
    data.setdefault("plugins", [])
    data.setdefault("metadata", {})
    targets = data.setdefault("targets", {"coreml": {}})
    for name in list(targets):
        if targets[name] is None:
            targets[name] = {}
    if "coreml" in targets:
        _coreml_defaults(targets["coreml"], data.get("inputs", []))
    for name, defaults in TARGET_OPTIONS.items():
        if name in targets:
            targets[name] = {**defaults, **targets[name]}
            if "quantize" in targets[name]:
                targets[name]["quantize"] = {**QUANTIZE[name], **(targets[name]["quantize"] or {})}
    explicit = data.get("validate", {})
    data["validate"] = {**VALIDATE, **explicit}
    for name, options in targets.items():
        options["validate"] = _target_tolerance(name, options, data["validate"], explicit)
    # A variant's eager baseline is its base model's: timing it again would add identical rows.
    baseline = [] if "variant_of" in data else ["torch"]
    data["benchmark"] = {**BENCHMARK, "backends": [*baseline, *sorted(targets)], **data.get("benchmark", {})}
    return data


def _target_tolerance(name: str, options: dict[str, Any], model: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """The target's own ``validate`` wins, then the model's explicit values, then a default
    that fits the target's arithmetic: a float16 Core ML program cannot meet 1e-3."""
    base = {k: model[k] for k in ("atol", "rtol", "on_failure")}
    if name == "coreml" and options.get("precision") == "float16":
        base.update({k: v for k, v in FLOAT16_TOLERANCE.items() if k not in explicit})
    return {**base, **(options.get("validate") or {})}


def _coreml_defaults(coreml: dict[str, Any], inputs: list[dict[str, Any]]) -> None:
    # mlprogram refuses unbounded dimensions; neuralnetwork takes them. Pick the format that
    # can express what the inputs declare unless the manifest chose one itself.
    unbounded = any("shape" in i and has_unbounded(i) for i in inputs)
    coreml.setdefault("format", "neuralnetwork" if unbounded else "mlprogram")
    if coreml["format"] == "mlprogram":
        coreml.setdefault("deployment_target", "iOS15")
        coreml.setdefault("precision", "float16")
    else:
        coreml.setdefault("deployment_target", "iOS13")
        coreml.setdefault("precision", "float32")
    coreml.setdefault("compute_units", "all")
    coreml.setdefault("optimize", [])
    from modelbuild.coreml.compat import COMPAT  # names only: the conversions import coremltools when installed

    coreml["compat"] = {**{name: True for name in COMPAT.names()}, **coreml.get("compat", {})}
