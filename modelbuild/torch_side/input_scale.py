"""Fold a per-channel scaling of an input into the convolution that reads it
(``targets.executorch.fold_input_scale`` and ``targets.onnx.fold_input_scale``, on by default).

An image input's ``normalize`` has a per-channel 1/std that no single ImageType scale can
say, so the wrapper multiplies the input by it (torch_side/wrapper.py) and every program
carries that multiplication. On a CPU it is a whole pass over the image before the first
convolution: 0.032 ms of the classifier's 0.59 ms at 224x224 in XNNPACK, one thread.
Multiplying the convolution's weights by the same factors instead, once at build time, gives
the same function: conv(W, x * s) = conv(W * s, x) for a scaling per input channel, and the
zero padding stays zero on both sides. Measured with bench/input_scale.py, one thread: the
classifier 1.06x faster in XNNPACK (0.597 against 0.633 ms) and 1.07x in ONNX Runtime (0.498
against 0.532 ms). Float results differ by rounding only (the classifier: max abs 2.2e-8
against 1.5e-8 with the multiplication), and the verify stages check the artifact against
PyTorch as always.

Folded only when nothing else could see the difference: the multiplication reads a user
input and a constant shaped (1, C, 1, ...), its only reader is a plain (not transposed,
ungrouped) convolution reading it as its input, and that convolution's weight is a constant
no other operator reads.

Works on a torch.export program with torch alone (the ONNX target needs no ExecuTorch), the
way ExecuTorch's own constant-placeholder helpers do it, so both targets fold alike.
"""

from __future__ import annotations

from typing import Any


def fold_input_scale(program: Any) -> list[str]:
    """Fold in place; the model's modules whose weights took a scaling (empty: the program is
    unchanged)."""
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
            name = _unused_name(program, f"{weight_node.name}_input_scaled")
            scaled = _new_parameter(program, graph, name, (weight * per_channel).detach())
        conv.replace_input_with(weight_node, scaled)
        conv.replace_input_with(mul, image)
        graph.erase_node(mul)
        for node in (weight_node, factors):
            if not node.users:
                _drop_constant(program, node)
    if folded:
        graph.lint()
        program.graph_module.recompile()
    return folded


FOLDED_NOTE = "input scaling folded into the weights of"


def fold_and_note(program: Any, target: str, notes: list[str]) -> None:
    """What a target's export stage calls: fold, and say in the build's notes which layer took
    the scaling and which switch turns it off."""
    folded = fold_input_scale(program)
    if folded:
        notes.append(f"{FOLDED_NOTE} {', '.join(folded)} (targets.{target}.fold_input_scale)")


def _new_parameter(program: Any, graph: Any, name: str, data: Any) -> Any:
    """A parameter placeholder at the graph's insertion point, with its value in the program's
    state dict and its place in the signature (which lists inputs in placeholder order)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorConverter
    from torch.export.graph_signature import ExportGraphSignature, InputKind, InputSpec, TensorArgument

    first = next(iter(graph.nodes)).meta["val"]
    example = first[0] if isinstance(first, (tuple, list)) else first
    node = graph.create_node(op="placeholder", name=name, target=name)
    node.target = node.name
    node.meta["val"] = FakeTensorConverter().from_real_tensor(example.fake_mode, t=data)
    program.state_dict[node.name] = torch.nn.Parameter(data, requires_grad=False)
    position = [n.name for n in graph.nodes if n.op == "placeholder"].index(node.name)
    specs = list(program.graph_signature.input_specs)
    specs.insert(position, InputSpec(InputKind.PARAMETER, TensorArgument(node.name), node.name, None))
    program._graph_signature = ExportGraphSignature(specs, program.graph_signature.output_specs)
    return node


def _drop_constant(program: Any, node: Any) -> None:
    """Remove an unread constant placeholder: node, signature entry and value."""
    from torch.export.graph_signature import ExportGraphSignature

    signature = program.graph_signature
    if node.name in signature.inputs_to_parameters:
        del program.state_dict[signature.inputs_to_parameters[node.name]]
    elif node.name in signature.inputs_to_buffers:
        target = signature.inputs_to_buffers[node.name]
        (program.constants if target in signature.non_persistent_buffers else program.state_dict).pop(target)
    else:
        del program.constants[signature.inputs_to_lifted_tensor_constants[node.name]]
    specs = [spec for spec in signature.input_specs if spec.arg.name != node.name]
    program._graph_signature = ExportGraphSignature(specs, signature.output_specs)
    node.graph.erase_node(node)


def _unused_name(program: Any, wanted: str) -> str:
    """A name no node has and no stored tensor is kept under (the new weight is stored under
    its placeholder's name). A model's own parameter could be called that: ExecuTorch's helper,
    which this fold once used, even handed back the existing placeholder, so the convolution
    read that tensor instead of the scaled weight; and a top-level parameter's key is its
    placeholder's name without the ``p_``."""
    taken = {node.name for node in program.graph.nodes} | set(program.state_dict) | set(program.constants)
    name, suffix = wanted, 1
    while name in taken:
        name, suffix = f"{wanted}_{suffix}", suffix + 1
    return name


def _foldable(program: Any, mul: Any) -> tuple[Any, Any, Any, Any, Any, Any] | None:
    """(input, factors, convolution, weight node, weight, factors' tensor) when ``mul`` scales a
    user input per channel for one convolution alone; None otherwise."""
    import torch

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
    weight, scale = _value(program, weight_node), _value(program, factors)
    value = image.meta.get("val")
    per_channel = (1, weight.shape[1], *[1] * (weight.dim() - 2))
    if value is None or value.dim() != weight.dim() or tuple(scale.shape) != per_channel or scale.dtype != weight.dtype:
        return None
    if not _same_tensor_type(value, mul.meta.get("val")):
        return None
    return image, factors, conv, weight_node, weight, scale


def _same_tensor_type(image: Any, scaled: Any) -> bool:
    """The scaled image is the image's shape and dtype: a multiplication that broadcasts one
    channel to C or promotes float16 to float32 is not a scaling a convolution can absorb
    (folded, the convolution met one channel, or half precision, and the build failed with an
    error about channels or dtypes that named neither the fold nor the switch)."""
    if scaled is None or image.dtype != scaled.dtype or image.dim() != scaled.dim():
        return False
    return [str(size) for size in image.shape] == [str(size) for size in scaled.shape]


def _user_inputs(program: Any) -> set[str]:
    return set(program.graph_signature.user_inputs)


def _value(program: Any, node: Any) -> Any:
    """The tensor of a lifted parameter, buffer or constant placeholder; None for anything else."""
    from torch._export.utils import get_buffer, get_lifted_tensor_constant, get_param

    for get in (get_param, get_buffer, get_lifted_tensor_constant):
        value = get(program, node)
        if value is not None:
            return value
    return None


def _constant(program: Any, node: Any) -> bool:
    """A lifted parameter, buffer or constant: a placeholder this fold can replace and delete."""
    import torch

    return isinstance(node, torch.fx.Node) and node.op == "placeholder" and _value(program, node) is not None
