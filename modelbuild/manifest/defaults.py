"""Built-in defaults, applied after project defaults so that every key is computed from
fully resolved data: writing ``mode: trace`` or leaving it out must give the same build."""

from __future__ import annotations

import copy
from typing import Any

from modelbuild.manifest.shapes import resolve_named

VALIDATE = {"samples": 2, "shapes": ["default", "min", "max"], "atol": 1e-3, "rtol": 1e-3, "on_failure": "error"}
BENCHMARK = {"runs": "auto", "warmup": 10, "time_budget": 20, "shapes": ["default"], "threads": 1}


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
    resolve_named(data)
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
    from modelbuild.targets import TARGETS

    for name in targets:
        targets[name] = TARGETS.get(name).apply_defaults(targets[name], data)
    explicit = data.get("validate", {})
    data["validate"] = {**VALIDATE, **explicit}
    for name, options in targets.items():
        options["validate"] = _target_tolerance(TARGETS.get(name).default_tolerance(options), options, data["validate"], explicit)
    # A variant's eager baseline is its base model's: timing it again would add identical rows.
    baseline = [] if "variant_of" in data else ["torch"]
    data["benchmark"] = {**BENCHMARK, "backends": [*baseline, *sorted(targets)], **data.get("benchmark", {})}
    return data


def _target_tolerance(fitting: dict[str, Any], options: dict[str, Any], model: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """The target's own ``validate`` wins, then the model's explicit values, then a default
    that fits the target's arithmetic (``fitting``: a float16 Core ML program cannot meet 1e-3)."""
    base = {k: model[k] for k in ("atol", "rtol", "on_failure")}
    base.update({k: v for k, v in fitting.items() if k not in explicit})
    return {**base, **(options.get("validate") or {})}
