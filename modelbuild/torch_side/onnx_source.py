"""``source: {onnx: model.onnx}``: an ONNX graph as a PyTorch module (onnx2torch), and ONNX
Runtime on the original file as the reference every target is verified against.

coremltools dropped ONNX input in 6.0; a user who only has an ONNX file gets to Core ML,
ExecuTorch and a re-exported ONNX through the normal pipeline this way. Two things keep it
honest: the graph is checked node by node before converting (onnx2torch's own error names
neither the node nor the model's opset), and the reference is what the user actually had
(ONNX Runtime on their file), not the converted module.
"""

from __future__ import annotations

import contextlib
import sys
import types
from pathlib import Path
from typing import Any, Iterator

from modelbuild.errors import Location, UserError, first_line

# onnx2torch 1.5 has converters up to these ONNX opset versions for most operators; models
# written at a later opset (torch's dynamo exporter writes 18) are converted down first.
HIGHEST_OPSET = 17


def read_model(path: Path, where: Location, shown: str) -> Any:
    import onnx
    import onnx.inliner

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{where}: cannot read {shown} as an ONNX model: {first_line(exc)}") from exc
    external = sorted(
        {
            entry.value
            for tensor in model.graph.initializer
            if tensor.data_location == onnx.TensorProto.EXTERNAL
            for entry in tensor.external_data
            if entry.key == "location"
        }
    )
    if external:
        # Those files are not part of the source snapshot or its fingerprint: new weights there
        # would rebuild nothing, and a location may point anywhere on the disk.
        raise UserError(
            f"{where}: expected a self-contained ONNX file, got one whose weights are in external data ({', '.join(external[:3])}); "
            "save it with onnx.save(model, path, save_as_external_data=False)"
        )
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)  # onnx2torch does not read local functions
    return model


def graph_inputs(model: Any) -> list[tuple[str, str, list[Any]]]:
    """(name, dtype, dims) of the graph's real inputs (initializers excluded); a dim is an int,
    its ``dim_param`` name, or None."""
    import onnx

    initializers = {i.name for i in model.graph.initializer}
    found = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dtype = str(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)) if tensor.elem_type else "?"
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
        found.append((value.name, dtype, dims))
    return found


def check_inputs(model: Any, inputs: list[dict[str, Any]], where: Any, shown: str) -> None:
    """The manifest's inputs are the graph's, in order: the module is called positionally."""
    declared = graph_inputs(model)
    names = [name for name, _dtype, _dims in declared]
    if names != [i["name"] for i in inputs]:
        listing = ", ".join(f"{name} ({dtype} {dims})" for name, dtype, dims in declared)
        raise UserError(f"{where('inputs')}: expected the inputs of {shown} in its order: {listing}; got {', '.join(i['name'] for i in inputs)}")


def _opsets(model: Any) -> dict[str, int]:
    return {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}


def unsupported_nodes(model: Any) -> list[str]:
    """Every node onnx2torch has no converter for, as ``node 'name': Op (domain, opset N)``."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = _opsets(model)
    found = []
    for index, node in enumerate(model.graph.node):
        domain = "" if node.domain == "ai.onnx" else node.domain
        name = node.name or f"#{index}"
        version = opsets.get(domain)
        if version is None:
            found.append(f"node {name!r}: {node.op_type} (domain {domain!r} is not in the model's opset_import)")
            continue
        try:
            get_converter(operation_type=node.op_type, version=version, domain=domain)
        except NotImplementedError:
            found.append(f"node {name!r}: {node.op_type} (domain {domain or 'ai.onnx'}, opset {version})")
    return found


def to_module(path: Path, where: Location, shown: str, fixed: dict[str, list[int]] | None = None) -> Any:
    """The ONNX file as an ``nn.Module`` in eval mode that returns a dict of the graph's outputs
    by name (so ``outputs[].select`` takes ONNX output names).

    ``fixed``: the input shapes when the manifest declares no flexible dimension. The graph's
    shape arithmetic (Shape, Gather, Concat feeding Resize or Reshape) is then folded into
    constants first: onnx2torch reads such values from tensors at run time, which a trace bakes
    in silently and torch.export refuses as data-dependent."""
    import onnx

    model = read_model(path, where, shown)
    if fixed:
        model = _specialise(model, fixed)
    onnx2torch = _import_onnx2torch()
    missing = unsupported_nodes(model)
    if missing and _opsets(model).get("", 0) > HIGHEST_OPSET:
        try:
            lowered = onnx.version_converter.convert_version(model, HIGHEST_OPSET)
        except Exception:  # noqa: BLE001 - keep the original model's message
            lowered = None
        if lowered is not None and not unsupported_nodes(lowered):
            model, missing = lowered, []
    if missing:
        raise UserError(
            f"{where}: onnx2torch cannot convert {len(missing)} node(s) of {shown}: " + "; ".join(missing[:5]) + ("; ..." if len(missing) > 5 else "")
        )
    try:
        # A ModelProto, not the path: with a path onnx2torch writes a temporary file beside it.
        graph = onnx2torch.convert(model)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{where}: onnx2torch failed on {shown}: {type(exc).__name__}: {first_line(exc)}") from exc
    graph = _python_names(graph)
    if fixed:
        graph = _constant_resizes(graph)
    return _named_outputs(graph.eval(), [o.name for o in model.graph.output])


def _specialise(model: Any, shapes: dict[str, list[int]]) -> Any:
    import onnx
    import onnxscript.optimizer

    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in model.graph.input:
        if value.name in shapes:
            for dim, size in zip(value.type.tensor_type.shape.dim, shapes[value.name]):
                dim.Clear()
                dim.dim_value = int(size)
    for value in model.graph.output:
        value.type.tensor_type.ClearField("shape")  # symbolic output dims would contradict the fixed inputs
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    return onnxscript.optimizer.optimize(model)


def _python_names(graph: Any) -> Any:
    """onnx2torch names submodules after ONNX nodes (``classifier/Conv``); coremltools resolves
    TorchScript attribute paths and fails on a '/', so every name becomes an identifier."""
    import re

    taken = {name for name, _ in graph.named_children()}
    renames: dict[str, str] = {}
    for name in sorted(taken):
        clean = re.sub(r"\W", "_", name)
        if clean != name:
            while clean in taken or clean in renames.values():
                clean += "_"
            renames[name] = clean
    if not renames:
        return graph
    for node in graph.graph.nodes:
        if node.op in ("call_module", "get_attr"):
            head, dot, rest = str(node.target).partition(".")
            if head in renames:
                node.target = renames[head] + dot + rest
    for old, new in renames.items():
        module = getattr(graph, old)
        delattr(graph, old)
        graph.add_submodule(new, module)
    graph.recompile()
    return graph


def _constant_resizes(graph: Any) -> Any:
    """Each onnx2torch Resize whose sizes or scales are constants becomes ``F.interpolate`` with
    Python numbers: it reads them with ``.tolist()`` at run time otherwise (see ``to_module``)."""
    import torch
    from onnx2torch.node_converters.resize import OnnxResize, _onnx_mode_to_torch_mode

    class ConstantResize(torch.nn.Module):
        def __init__(self, mode: str, align_corners: Any, size: list[int] | None, scale: list[float] | None) -> None:
            super().__init__()
            self.mode, self.align_corners, self.size, self.scale = mode, align_corners, size, scale

        def forward(self, x: Any) -> Any:
            mode = _onnx_mode_to_torch_mode(self.mode, x.dim() - 2)
            return torch.nn.functional.interpolate(x, size=self.size, scale_factor=self.scale, mode=mode, align_corners=self.align_corners)

    def constant(arg: Any) -> Any:
        if arg is None:
            return None
        if getattr(arg, "op", None) == "get_attr":
            return graph.get_buffer(arg.target)
        return False

    for node in list(graph.graph.nodes):
        if node.op != "call_module" or not isinstance(graph.get_submodule(node.target), OnnxResize):
            continue
        module = graph.get_submodule(node.target)
        args = list(node.args) + [None] * (4 - len(node.args))
        sizes, scales = constant(node.kwargs.get("sizes", args[3])), constant(node.kwargs.get("scales", args[2]))
        if sizes is False or scales is False:
            continue  # computed at run time: left as it is (the capture check compares a second sample)
        size = [int(v) for v in sizes.tolist()[2:]] if sizes is not None and sizes.numel() else None
        scale = None if size else ([float(v) for v in scales.tolist()[2:]] if scales is not None and scales.numel() else None)
        graph.add_submodule(node.target, ConstantResize(module.onnx_mode, module.align_corners, size, scale))
        node.args, node.kwargs = (node.args[0],), {}
    graph.graph.eliminate_dead_code()
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph


def _named_outputs(graph: Any, names: list[str]) -> Any:
    import torch

    class OnnxGraph(torch.nn.Module):
        """The converted graph, returning ``{onnx output name: tensor}`` in graph order."""

        def __init__(self, graph: Any, names: list[str]) -> None:
            super().__init__()
            self.converted = graph  # not "graph": a ScriptModule's .graph is its IR, which coremltools walks
            self.names = names

        def forward(self, *inputs: Any) -> dict[str, Any]:
            result = self.converted(*inputs)
            values = list(result) if isinstance(result, (tuple, list)) else [result]
            return dict(zip(self.names, values))

    return OnnxGraph(graph, names).eval()


def runtime_module(path: Path, where: Location, shown: str) -> Any:
    """ONNX Runtime on the original file, as a module with the converted one's interface: the
    reference stage wraps and samples it exactly as it would the PyTorch model."""
    import numpy as np
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # reproducible sums
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{where}: ONNX Runtime cannot load {shown}: {first_line(exc)}") from exc
    feeds = [i.name for i in session.get_inputs()]
    names = [o.name for o in session.get_outputs()]

    class OnnxRuntime(torch.nn.Module):
        def forward(self, *inputs: Any) -> dict[str, Any]:
            arrays = session.run(names, {name: np.ascontiguousarray(x.detach().cpu().numpy()) for name, x in zip(feeds, inputs)})
            return {name: torch.from_numpy(np.asarray(a)) for name, a in zip(names, arrays)}

    return OnnxRuntime().eval()


@contextlib.contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    """onnx2torch imports torchvision for its NMS and RoiAlign converters only, and the torch
    2.13 CPU build has no working torchvision. When it cannot be imported, a stand-in whose ops
    say so is there for the import, and removed afterwards so nothing else finds it."""
    try:
        import torchvision  # noqa: F401

        yield
        return
    except Exception:  # noqa: BLE001 - a broken torchvision raises RuntimeError, not ImportError
        pass
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    stand_in, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")

    def unavailable(op: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"this ONNX model needs torchvision.ops.{op}, and torchvision cannot be imported with this torch build")

        return call

    for op in ("nms", "roi_align"):
        setattr(ops, op, unavailable(op))
    stand_in.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stand_in, ops
    try:
        yield
    finally:
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.ops", None)


def _import_onnx2torch() -> Any:
    try:
        with _torchvision_stand_in():
            import onnx2torch
    except ImportError as exc:
        raise UserError(
            "source.onnx needs onnx2torch: pip install --no-deps onnx2torch "
            "(--no-deps: its torchvision requirement does not install cleanly beside torch 2.13 CPU)"
        ) from exc
    return onnx2torch
