"""A target is a chain of stages after ``capture`` that ends in one shipped artifact, and the
runtime that runs that artifact. Its ``<name>.verify`` and ``<name>.bench`` stages come from
the runtime: a new target never writes its own.

A target also owns its manifest table, ``targets.<name>``: the JSON Schema of its options
(the shipped schema is generated from these), their defaults and the checks the schema cannot
express. Nothing outside the target's own module knows its option names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar

if TYPE_CHECKING:
    from modelbuild.manifest.spec import ModelSpec

# A check reports through ``fail(field, message)``; the field is a manifest path such as
# "targets.coreml.precision", so the message carries its file and line.
Fail = Callable[[str, str], None]


class Target:
    name: ClassVar[str]
    stages: ClassVar[tuple[str, ...]]  # in order; the last one writes the artifact
    runtime: ClassVar[str]  # a name in modelbuild.runtimes.RUNTIMES

    # (stage, file) that verification and benchmarks run: by default the shipped artifact. A
    # target whose last stage only stamps metadata names the stage before it, so editing a
    # description never re-runs a verification (metadata does not compute).
    verified: ClassVar[tuple[str, str] | None] = None

    # The target converts a TorchScript trace of recurrent layers where it cannot convert their
    # torch.export graph (coremltools 9.0 and nn.LSTM/GRU/RNN): an ``export`` capture then
    # saves a trace beside the program, and the capture key says so.
    trace_for_recurrent: ClassVar[bool] = False

    # JSON Schema ``properties`` of ``targets.<name>``. ``validate`` (atol, rtol, on_failure)
    # is added for every target; ``validate_options`` adds target-specific fields to it.
    options: ClassVar[dict[str, Any]] = {}
    validate_options: ClassVar[dict[str, Any]] = {}
    # Plain defaults, filled where the manifest leaves a field out.
    defaults: ClassVar[dict[str, Any]] = {}
    # Defaults of optional tables (``quantize``), filled only when the manifest writes the table.
    table_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def apply_defaults(cls, options: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """The resolved ``targets.<name>`` table. ``data`` is the whole model (inputs are
        resolved already) for defaults that depend on it. Omitting a field and writing its
        default must give the same table: both end up in the same stage keys."""
        resolved = {**cls.defaults, **options}
        for table, defaults in cls.table_defaults.items():
            if table in resolved:
                resolved[table] = {**defaults, **(resolved[table] or {})}
        return resolved

    @classmethod
    def default_tolerance(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Tolerances that fit this target's arithmetic when the manifest sets none (a float16
        program cannot meet float32's 1e-3)."""
        return {}

    @classmethod
    def check(cls, model: "ModelSpec", fail: Fail) -> None:
        """Rules the schema cannot express, said before anything is built."""

    @classmethod
    def capture_params(cls, model: "ModelSpec") -> dict[str, Any]:
        """What this target adds to the ``capture`` key: options that change the captured
        module for this target's sake (Core ML's capture-phase compatibility conversions)."""
        return {}

    @classmethod
    def before_script(cls, capture_params: dict[str, Any], module: Any) -> list[str]:
        """Change the module just before ``torch.jit.script``, as ``capture_params`` says;
        return notes for the summary. The capture stage calls this for every target."""
        return []

    @classmethod
    def artifact_stage(cls) -> str:
        return cls.stages[-1]


# Option schemas more than one target shares.
FIXED_SHAPES = {
    "type": "boolean",
    "description": "export at the inputs' default shapes only (for models whose flexible dimensions torch.export cannot keep, e.g. nn.LSTM's sequence length)",
}


def fold_input_scale(where: str) -> dict[str, Any]:
    """The switch for modelbuild.torch_side.input_scale, worded for one target."""
    return {
        "type": "boolean",
        "description": (
            "fold an input's per-channel scaling (normalize's 1/std) into the weights of the convolution that reads it, "
            f"one pass over the image less per call ({where}); false keeps the multiplication"
        ),
    }


def int8_quantize(description: str, **extra: Any) -> dict[str, Any]:
    """The ``quantize`` table of a target with post-training int8 quantisation."""
    return {
        "type": "object",
        "additionalProperties": False,
        "description": description,
        "properties": {
            "dtype": {"enum": ["int8"], "description": "the integer type of weights (and static activations)"},
            "per_channel": {"type": "boolean", "description": "one scale per output channel of a weight (else per tensor)"},
            "calibration_samples": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1024,
                "description": "samples the quantiser observes: validate.data first, then seeded samples at the default, min and max shapes",
            },
            "keep_float": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "uniqueItems": True,
                "description": (
                    "modules left float, as fnmatch patterns over the model's module names (a module and everything inside it); "
                    "a pattern that matches no module fails the export"
                ),
                "examples": [["features.0.0", "head"]],
            },
            **extra,
        },
    }
