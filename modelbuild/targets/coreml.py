"""Core ML: convert with coremltools, then stamp metadata and write the package deterministically.

The options below are coremltools' own (``minimum_deployment_target``, ``convert_to``,
``compute_precision``, ``coremltools.optimize.coreml``); the checks say up front what
coremltools would refuse only after a full conversion.
"""

from __future__ import annotations

import re
from typing import Any

from modelbuild.manifest.shapes import has_unbounded
from modelbuild.manifest.spec import ModelSpec
from modelbuild.targets import TARGETS
from modelbuild.targets.base import Fail, Target

DEPLOYMENT_TARGETS = [
    *(f"iOS{v}" for v in (13, 14, 15, 16, 17, 18, 26)),
    "macOS10_15",
    *(f"macOS{v}" for v in (11, 12, 13, 14, 15, 26)),
    *(f"watchOS{v}" for v in (6, 7, 8, 9, 10, 11, 26)),
    *(f"tvOS{v}" for v in (13, 14, 15, 16, 17, 18, 26)),
]
NEURALNETWORK_MAX = {"iOS": 15, "macOS": 12, "watchOS": 8, "tvOS": 15}  # the last releases that take neuralnetwork
IOS18_ERA = {"iOS": 18, "tvOS": 18, "macOS": 15, "watchOS": 11}  # the releases of 2024, where these arrived
IOS18_GRANULARITY = {"quantize": "per_block", "palettize": "per_grouped_channel"}
FLOAT16_TOLERANCE = {"atol": 5e-2, "rtol": 5e-2}

_SELECTION = {
    "op_types": {"type": "array", "items": {"type": "string"}, "description": "only ops of these MIL types (e.g. conv, linear)"},
    "op_names": {"type": "array", "items": {"type": "string"}, "description": "only these ops (MIL op names, see the package)"},
    "weight_threshold": {"type": "integer", "minimum": 0, "description": "weights with fewer elements stay as they are (coremltools default 2048)"},
}


def _step(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {**properties, **_SELECTION}}
    if required:
        step["required"] = required
    return step


OPTIMIZE_STEP: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
    "x-expected": "one of quantize, palettize, prune",
    "properties": {
        "quantize": _step(
            {
                "dtype": {"enum": ["int8", "uint8"], "description": "weights' integer type"},
                "mode": {"enum": ["linear", "linear_symmetric"], "description": "with or without a zero point"},
                "granularity": {
                    "enum": ["per_tensor", "per_channel", "per_block"],
                    "description": "one scale per tensor, output channel or block (per_block: iOS18)",
                },
                "block_size": {"type": "integer", "minimum": 1, "description": "with per_block: weights per block"},
            }
        ),
        "palettize": _step(
            {
                "nbits": {"type": "integer", "minimum": 1, "maximum": 8, "description": "bits per weight: a lookup table of 2^nbits values"},
                "mode": {"enum": ["kmeans", "uniform"], "description": "how the table is chosen (kmeans needs the compress extra)"},
                "granularity": {"enum": ["per_tensor", "per_grouped_channel"], "description": "one table per tensor or per group of channels (iOS18)"},
                "group_size": {"type": "integer", "minimum": 1, "description": "with per_grouped_channel: channels per table"},
            },
            required=["nbits"],
        ),
        "prune": _step(
            {
                "sparsity": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 1,
                    "x-expected": "a fraction of weights to zero, 0 < sparsity <= 1",
                    "description": "the fraction of weights set to zero (the smallest in magnitude)",
                },
                "threshold": {"type": "number", "minimum": 0, "description": "zero weights whose magnitude is at most this"},
                "block_size": {"type": "integer", "minimum": 1, "description": "prune whole blocks of this many weights"},
            }
        ),
    },
}
OPTIMIZE_STEP["properties"]["quantize"]["description"] = "linear weight quantisation (coremltools.optimize.coreml.linear_quantize_weights)"
OPTIMIZE_STEP["properties"]["palettize"]["description"] = "weight palettization (coremltools.optimize.coreml.palettize_weights)"
OPTIMIZE_STEP["properties"]["prune"]["description"] = "magnitude pruning (coremltools.optimize.coreml.prune_weights): sparsity or threshold"


def _compat_switches() -> dict[str, Any]:
    # Names only: the conversions import coremltools when they run, never here.
    from modelbuild.coreml.compat import COMPAT

    return {
        "type": "object",
        "additionalProperties": False,
        "description": "built-in compatibility conversions (docs/compat.md); set one to false to switch it off",
        "properties": {name: {"type": "boolean", "description": COMPAT.get(name).fixes} for name in COMPAT.names()},
    }


@TARGETS.register
class CoreMLTarget(Target):
    """Core ML: a .mlpackage (or .mlmodel) converted by coremltools from the captured module."""

    name = "coreml"
    stages = ("coreml.convert", "coreml.optimize", "coreml.package")
    runtime = "coreml"
    verified = ("coreml.optimize", "model.mlpackage")
    trace_for_recurrent = True
    options = {
        "format": {
            "enum": ["mlprogram", "neuralnetwork"],
            "description": "ML program (.mlpackage with weights) or the older neural network; default mlprogram unless an input is unbounded",
        },
        "deployment_target": {
            "enum": DEPLOYMENT_TARGETS,
            "description": "the oldest OS the model runs on (minimum_deployment_target); default iOS15, iOS13 for neuralnetwork",
        },
        "precision": {"enum": ["float16", "float32"], "description": "compute precision of an ML program (float16 default; neuralnetwork is float32)"},
        "compute_units": {
            "enum": ["all", "cpu_only", "cpu_and_gpu", "cpu_and_ne"],
            "description": "the units Core ML may use when modelbuild runs the model (predict, benchmarks)",
        },
        "float32_modules": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "description": "torch modules (paths as `modelbuild explain` prints them, e.g. model.norm) whose ops compute in float32 in a float16 program",
        },
        "optimize": {
            "type": "array",
            "description": "post-conversion compression steps, applied in order (coremltools.optimize.coreml)",
            "items": OPTIMIZE_STEP,
        },
        "compat": _compat_switches(),
    }
    validate_options = {
        "cross_check": {
            "type": "boolean",
            "description": "on macOS, also run the package in modelbuild's executor and report how far it is from Core ML's predict",
        }
    }

    @classmethod
    def apply_defaults(cls, options: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        from modelbuild.coreml.compat import COMPAT

        coreml = dict(options)
        # mlprogram refuses unbounded dimensions; neuralnetwork takes them. Pick the format
        # that can express what the inputs declare unless the manifest chose one itself.
        unbounded = any("shape" in i and has_unbounded(i) for i in data.get("inputs", []))
        coreml.setdefault("format", "neuralnetwork" if unbounded else "mlprogram")
        program = coreml["format"] == "mlprogram"
        coreml.setdefault("deployment_target", "iOS15" if program else "iOS13")
        coreml.setdefault("precision", "float16" if program else "float32")
        coreml.setdefault("compute_units", "all")
        coreml.setdefault("float32_modules", [])
        coreml.setdefault("optimize", [])
        coreml["compat"] = {**{name: True for name in COMPAT.names()}, **coreml.get("compat", {})}
        return coreml

    @classmethod
    def default_tolerance(cls, options: dict[str, Any]) -> dict[str, Any]:
        return dict(FLOAT16_TOLERANCE) if options.get("precision") == "float16" else {}

    @classmethod
    def check(cls, model: ModelSpec, fail: Fail) -> None:
        data = model.data
        coreml = data["targets"][cls.name]
        if coreml["format"] == "mlprogram":
            for i, inp in enumerate(data["inputs"]):
                if "shape" in inp and has_unbounded(inp):
                    axis = next(j for j, d in enumerate(inp["shape"]) if isinstance(d, dict) and "max" not in d)
                    fail(
                        f"inputs[{i}].shape[{axis}]",
                        "expected a max for every flexible dimension with targets.coreml.format 'mlprogram' "
                        "(Core ML ML programs refuse unbounded dimensions); add max, or use format 'neuralnetwork'",
                    )
        else:
            target = coreml["deployment_target"]
            family, major = _release(target)
            if major > NEURALNETWORK_MAX.get(family, 99):
                fail(
                    "targets.coreml.deployment_target",
                    f"expected at most {family}{NEURALNETWORK_MAX[family]} with format 'neuralnetwork', "
                    f"got {target!r}; use format 'mlprogram' for newer targets",
                )
            if coreml.get("precision") == "float16":
                fail(
                    "targets.coreml.precision",
                    "expected float32 with format 'neuralnetwork' (float16 precision applies to ML programs); use 'mlprogram' or quantize in optimize",
                )
        if coreml["float32_modules"] and (coreml["format"] != "mlprogram" or coreml["precision"] != "float16"):
            fail(
                "targets.coreml.float32_modules",
                "expected a float16 ML program (format mlprogram, precision float16) for float32_modules, "
                f"got format {coreml['format']!r}, precision {coreml['precision']!r}: everything computes in float32 already",
            )
        _check_optimize(coreml, fail)
        for i, out in enumerate(data.get("outputs") or []):
            if out["kind"] == "image" and any("shape" in inp and has_unbounded(inp) for inp in data["inputs"]):
                fail(
                    f"outputs[{i}].kind",
                    "expected a tensor output: Core ML image outputs need bounded input dimensions (coremltools rejects symbolic image output shapes)",
                )

    @classmethod
    def capture_params(cls, model: ModelSpec) -> dict[str, Any]:
        """The capture-phase compatibility switches, in the key only where they can act (script
        mode), so that switching one off for a traced model rebuilds nothing."""
        if model.data["capture"]["mode"] != "script":
            return {}
        from modelbuild.coreml.compat import phase_switches

        return {"compat": phase_switches(model.data["targets"]["coreml"]["compat"], "capture")}

    @classmethod
    def before_script(cls, capture_params: dict[str, Any], module: Any) -> list[str]:
        from modelbuild.coreml.compat import COMPAT, enabled

        notes: list[str] = []
        for name in enabled(capture_params.get("compat", {}), "capture"):
            notes += COMPAT.get(name).before_script(module)
        return notes


def _release(deployment_target: str) -> tuple[str, int]:
    """("iOS", 17) from "iOS17"; ("macOS", 10) from "macOS10_15"."""
    family, major = re.match(r"([a-zA-Z]+)(\d+)", deployment_target).groups()  # type: ignore[union-attr]
    return family, int(major)


def _check_optimize(coreml: dict[str, Any], fail: Fail) -> None:
    """What coremltools.optimize.coreml would refuse after a full conversion, said up front."""
    target = coreml["deployment_target"]
    family, major = _release(target)
    modern = major >= IOS18_ERA.get(family, 18)
    for index, step in enumerate(coreml.get("optimize", [])):
        ((kind, options),) = step.items()
        at = f"targets.coreml.optimize[{index}].{kind}"
        if coreml["format"] != "mlprogram":
            fail(at, "expected format 'mlprogram': coremltools.optimize.coreml compresses ML programs only")
            return
        if index == 1 and not modern:
            fail(at, f"expected deployment_target iOS18/macOS15 or later for a second compression step (joint compression), got {target!r}")
        if kind == "prune" and ("sparsity" in options) == ("threshold" in options):
            fail(at, f"expected exactly one of sparsity or threshold, got {', '.join(sorted(options)) or 'neither'}")
        if kind in IOS18_GRANULARITY and options.get("granularity") == IOS18_GRANULARITY[kind] and not modern:
            fail(f"{at}.granularity", f"expected deployment_target iOS18/macOS15 or later for granularity {options['granularity']!r}, got {target!r}")
        if kind == "quantize" and options.get("granularity") != "per_block" and "block_size" in options:
            fail(f"{at}.block_size", "expected granularity 'per_block' with block_size")
