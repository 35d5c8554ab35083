"""A scripted convolution without a bias fails to convert ("bias has dtype str")."""

from __future__ import annotations

from typing import Any

from modelbuild.coreml.compat import COMPAT, Compat


@COMPAT.register
class ScriptConvBias(Compat):
    name = "script_conv_bias"
    phase = "capture"
    fixes = "capture.mode script of a convolution with bias=False: coremltools fails with 'bias has dtype str'"
    does = (
        "gives bias-less convolutions an exact zero bias before scripting (freezing, which every script capture does, "
        "fixes this too; this stays for a module torch.jit.freeze refuses)"
    )

    @classmethod
    def before_script(cls, module: Any) -> list[str]:
        fixed = give_convolutions_a_zero_bias(module)
        return [f"compat: {fixed} bias-less convolution(s) given a zero bias for scripting (exact; coremltools needs it)"] if fixed else []


def give_convolutions_a_zero_bias(model: Any) -> int:
    """A zero bias computes exactly what no bias does, and coremltools converts it."""
    import torch

    count = 0
    for module in model.modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd) and module.bias is None:
            module.bias = torch.nn.Parameter(torch.zeros(module.out_channels, dtype=module.weight.dtype), requires_grad=False)
            count += 1
    return count
