"""TorchScript: the captured module as ``.pt`` (and ``.ptl`` for the lite interpreter)."""

from modelbuild.targets import TARGETS
from modelbuild.targets.base import Target


@TARGETS.register
class TorchScriptTarget(Target):
    """TorchScript: the captured module as .pt (and .ptl for the lite interpreter)."""

    name = "torchscript"
    stages = ("torchscript.export",)
    runtime = "torchscript"
    options = {
        "lite": {"type": "boolean", "description": "also save a .ptl for the PyTorch lite interpreter"},
        "optimize_for_mobile": {
            "description": (
                "run torch.utils.mobile_optimizer.optimize_for_mobile on the module before saving (conv-bn fusion, "
                "XNNPACK prepacked conv/linear, add-relu fusion, dropout removal); an object picks passes to skip "
                "and methods to keep. Needs a torch built with XNNPACK"
            ),
            "x-expected": "true/false, or {blocklist: [pass names], preserved_methods: [method names]}",
            "oneOf": [
                {"type": "boolean"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "blocklist": {
                            "type": "array",
                            "uniqueItems": True,
                            "items": {"enum": ["CONV_BN_FUSION", "INSERT_FOLD_PREPACK_OPS", "REMOVE_DROPOUT", "FUSE_ADD_RELU", "HOIST_CONV_PACKED_PARAMS"]},
                            "description": "optimizer passes to skip (torch.utils.mobile_optimizer.MobileOptimizerType names)",
                        },
                        "preserved_methods": {
                            "type": "array",
                            "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                            "description": "methods besides forward to keep in the optimized module",
                        },
                    },
                },
            ],
        },
    }
    defaults = {"lite": False, "optimize_for_mobile": False}
