"""ExecuTorch: torch.export, lowered to a delegate (XNNPACK by default), a ``.pte`` program."""

from __future__ import annotations

from modelbuild.manifest.spec import ModelSpec
from modelbuild.targets import TARGETS
from modelbuild.targets.base import FIXED_SHAPES, Fail, Target, fold_input_scale, int8_quantize

# The switches of torch_side.xnnpack_friendly (named here too: planning never imports torch).
DECOMPOSE = {
    "reflection_pad": "reflection padding as one-row slices and a concatenation (ExecuTorch's own is an arange/abs/index chain XNNPACK refuses)",
    "instance_norm": "instance norm as mean, variance and division on (N, C, H, W) (ExecuTorch's own reshapes and repeats the weight)",
    "nearest_upsample": (
        "nearest upsampling by whole factors as multiplications by ones between reshapes, rows repeated by index_select "
        "at flexible sizes (XNNPACK has no nearest upsampling)"
    ),
}


@TARGETS.register
class ExecuTorchTarget(Target):
    """ExecuTorch: a .pte program from torch.export, lowered to a delegate (XNNPACK by default)."""

    name = "executorch"
    stages = ("executorch.export",)
    runtime = "executorch"
    options = {
        "backend": {"enum": ["xnnpack", "portable", "coreml"], "description": "the delegate the program is lowered to (portable: no delegate)"},
        "fixed_shapes": FIXED_SHAPES,
        "unbounded_max": {
            "type": "integer",
            "minimum": 2,
            "description": "upper bound ExecuTorch plans memory for, for every flexible dimension without a max (default 1024)",
        },
        "quantize": int8_quantize(
            "int8 post-training quantisation through the PT2E flow (XNNPACKQuantizer); xnnpack backend only",
            mode={
                "enum": ["static", "dynamic"],
                "description": "static (weights and activations, calibrated) or dynamic (XNNPACK's dynamically quantised Linear path, for transformers)",
            },
        ),
        "planned_inputs": {
            "type": "boolean",
            "description": (
                "plan memory for the inputs and copy each one in at every call (ExecuTorch's alloc_graph_input); "
                "false: the program reads the caller's input tensors in place, one copy less per call"
            ),
        },
        "fold_input_scale": fold_input_scale("xnnpack backend, float programs"),
        "decompose": {
            "type": "object",
            "additionalProperties": False,
            "properties": {name: {"type": "boolean", "description": words} for name, words in DECOMPOSE.items()},
            "description": "built-in decompositions that keep the program inside XNNPACK (xnnpack backend only); set one to false to switch it off",
            "examples": [{"reflection_pad": False}],
        },
    }
    defaults = {
        "backend": "xnnpack",
        "fixed_shapes": False,
        "unbounded_max": 1024,
        "planned_inputs": False,
        "fold_input_scale": True,
        "decompose": {"reflection_pad": True, "instance_norm": True, "nearest_upsample": True},
    }
    table_defaults = {"quantize": {"dtype": "int8", "mode": "static", "per_channel": True, "calibration_samples": 16}}

    @classmethod
    def check(cls, model: ModelSpec, fail: Fail) -> None:
        options = model.data["targets"][cls.name]
        if options.get("quantize") and options["backend"] != "xnnpack":
            fail("targets.executorch.quantize", f"expected backend 'xnnpack' for int8 PT2E quantisation (XNNPACKQuantizer), got {options['backend']!r}")
