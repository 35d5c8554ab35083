"""Fold a per-channel scaling of an input into the convolution that reads it
(``targets.executorch.fold_input_scale``, on by default).

An image input's ``normalize`` has a per-channel 1/std that no single ImageType scale can
say, so the wrapper multiplies the input by it (torch_side/wrapper.py) and every program
carries that multiplication. On a CPU it is a whole pass over the image before the first
convolution: 0.032 ms of the classifier's 0.59 ms at 224x224 in XNNPACK, one thread.
Multiplying the convolution's weights by the same factors instead, once at build time, gives
the same function: conv(W, x * s) = conv(W * s, x) for a scaling per input channel, and the
zero padding stays zero on both sides. Measured on the classifier: 0.59 against 0.63 ms, 2.30x
eager against 2.13x. Float results differ by rounding only (the classifier: max abs 2.2e-8
against 1.5e-8 with the multiplication), and executorch.verify checks the program against
PyTorch as always.

Folded only when nothing else could see the difference: the multiplication reads a user
input and a constant shaped (1, C, 1, ...), its only reader is a plain (not transposed,
ungrouped) convolution reading it as its input, and that convolution's weight is a constant
no other operator reads.
"""

from __future__ import annotations

from typing import Any


def fold_input_scale(program: Any) -> list[str]:
    """Fold in place; the model's modules whose weights took a scaling (empty: the program is
    unchanged)."""
    from executorch.backends.transforms.utils import create_constant_placeholder, delete_constant_placeholder
    from torch.export.graph_signature import InputKind

    from modelbuild.quantize.keep_float import module_path

    graph = program.graph_module.graph
    folded = []
    for mul in list(graph.nodes):
        match = _foldable(program, mul)
        if match is None:
            continue
        image, factors, conv, weight_node, weight, scale = match
        target = program.graph_signature.inputs_to_parameters.get(weight_node.name, weight_node.name)
        folded.append(module_path(target.rsplit(".", 1)[0]) or target)
        per_channel = scale.reshape(1, weight.shape[1], *[1] * (weight.dim() - 2))
        with graph.inserting_before(weight_node):
            name = _unused_name(graph, f"{weight_node.name}_input_scaled")
            scaled = create_constant_placeholder(program, graph, name, InputKind.PARAMETER, (weight * per_channel).detach())
        conv.replace_input_with(weight_node, scaled)
        conv.replace_input_with(mul, image)
        graph.erase_node(mul)
        for node in (weight_node, factors):
            if not node.users:
                delete_constant_placeholder(program, node)
    if folded:
        graph.lint()
        program.graph_module.recompile()
    return folded


def _unused_name(graph: Any, wanted: str) -> str:
    """A placeholder name no node has: ExecuTorch's create_constant_placeholder hands back an
    existing placeholder of the same name (a model's own parameter could be called that), and
    the convolution would read that tensor instead of the scaled weight."""
    taken = {node.name for node in graph.nodes}
    name, suffix = wanted, 1
    while name in taken:
        name, suffix = f"{wanted}_{suffix}", suffix + 1
    return name


def _foldable(program: Any, mul: Any) -> tuple[Any, Any, Any, Any, Any, Any] | None:
    """(input, factors, convolution, weight node, weight, factors' tensor) when ``mul`` scales a
    user input per channel for one convolution alone; None otherwise."""
    import torch
    from executorch.backends.transforms.utils import get_param_tensor

    if mul.op != "call_function" or mul.target != torch.ops.aten.mul.Tensor or len(mul.users) != 1 or len(mul.args) != 2:
        return None
    inputs = _user_inputs(program)
    image, factors = mul.args
    if isinstance(image, torch.fx.Node) and image.op == "placeholder" and image.name not in inputs:
        image, factors = factors, image  # the constant first
    if not (isinstance(image, torch.fx.Node) and image.op == "placeholder" and image.name in inputs) or not _constant(program, factors):
        return None
    (conv,) = mul.users
    if conv.args[0] is not mul or mul in conv.args[1:] or mul in conv.kwargs.values():
        return None
    if conv.target == torch.ops.aten.convolution.default:  # (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
        transposed, groups = conv.args[6], conv.args[8]
    elif conv.target in (torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.default, torch.ops.aten.conv3d.default):
        transposed, groups = False, conv.args[6] if len(conv.args) > 6 else conv.kwargs.get("groups", 1)
    else:
        return None
    weight_node = conv.args[1]
    if transposed or groups != 1 or not _constant(program, weight_node) or len(weight_node.users) != 1:
        return None
    weight, scale = get_param_tensor(program, weight_node), get_param_tensor(program, factors)
    value = image.meta.get("val")
    per_channel = (1, weight.shape[1], *[1] * (weight.dim() - 2))
    if value is None or value.dim() != weight.dim() or tuple(scale.shape) != per_channel or scale.dtype != weight.dtype:
        return None
    return image, factors, conv, weight_node, weight, scale


def _user_inputs(program: Any) -> set[str]:
    return set(program.graph_signature.user_inputs)


def _constant(program: Any, node: Any) -> bool:
    """A lifted parameter, buffer or constant (a placeholder ExecuTorch's helpers can replace and delete)."""
    import torch
    from executorch.backends.transforms.utils import is_param_node

    return isinstance(node, torch.fx.Node) and node.op == "placeholder" and is_param_node(program, node)
