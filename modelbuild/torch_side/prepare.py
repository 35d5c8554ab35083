"""``prepare``: changes to the user's module before capture.

Folding and fusion are exact rewrites in eval mode (up to float rounding), so the module's
reference outputs stay those of the unprepared model and verification measures what they
changed. ``dtype`` is different: it is applied per torch-side target by ``cast_module`` so a
float16 TorchScript file never changes the Core ML conversion, which has its own precision.
"""

from __future__ import annotations

from typing import Any, Callable

from modelbuild.errors import Location, UserError

CONVS = ("Conv1d", "Conv2d", "Conv3d")


def apply(model: Any, options: dict[str, Any], probe: Callable[[], Any] | None = None, where: Callable[[str], Location] | None = None) -> list[str]:
    """Rewrite ``model`` in place; return notes saying what changed. ``probe`` runs the model
    once on a sample: explicit fusion groups are checked against the data flow it shows."""
    import torch

    notes = []
    fuse = options.get("fuse")
    if options.get("fold_batchnorm") or fuse is True:
        folded = _fold_batchnorms(model)
        notes.append(f"prepare: folded {folded} batch norm(s) into the layer before them")
    if fuse is True:
        fused = _fuse_relus(model)
        notes.append(f"prepare: fused {fused} conv/linear + ReLU pair(s)")
    elif fuse:
        notes.append(fuse_groups(model, fuse, probe, where or (lambda field: Location("", None, field))))
    if options.get("channels_last"):
        model.to(memory_format=torch.channels_last)
        notes.append("prepare: channels-last weights and 4-D inputs")
    model.eval()  # modules the rewrites add (Identity, fused intrinsics) start in training mode; a trace records the flag
    return notes


def fuse_groups(model: Any, groups: list[list[str]], probe: Callable[[], Any] | None, where: Callable[[str], Location]) -> str:
    """Fuse named module groups (``[[conv, bn, relu]]``) with ``torch.ao.quantization.fuse_modules``.

    fuse_modules checks only the modules' types: fusing a convolution with a ReLU that is
    applied to something else would silently change the model. So each module of a group must
    take exactly the previous one's output in a sample run, or the group is refused."""
    from torch.ao.quantization import fuse_modules

    modules = dict(model.named_modules())
    for index, group in enumerate(groups):
        missing = [name for name in group if name not in modules or not name]
        if missing:
            known = ", ".join(sorted(n for n in modules if n and "." not in n)[:12])
            raise UserError(f"{where(f'prepare.fuse[{index}]')}: expected module names of the model, got {missing[0]!r} (top-level modules: {known})")
    if probe is not None:
        _check_flow(model, groups, probe, where)
    try:
        fuse_modules(model, groups, inplace=True)
    except AssertionError as exc:
        kinds = str(exc).replace("did not find fuser method for: ", "").strip()
        raise UserError(
            f"{where('prepare.fuse')}: torch.ao.quantization.fuse_modules cannot fuse {kinds}; "
            "it fuses conv+bn(+relu), conv+relu, linear+bn, linear+relu and bn+relu"
        ) from exc
    return f"prepare: fused {len(groups)} module group(s): " + "; ".join("+".join(group) for group in groups)


def _check_flow(model: Any, groups: list[list[str]], probe: Callable[[], Any], where: Callable[[str], Location]) -> None:
    import torch

    wanted = {name for group in groups for name in group}
    # name -> (input tensors, output tensors) of its first call; holding the tensors (not their
    # ids) keeps a freed tensor's address from being taken for another's.
    seen: dict[str, tuple[list[Any], list[Any]]] = {}
    handles = []
    for name, module in model.named_modules():
        if name in wanted:

            def hook(module: Any, args: Any, output: Any, name: str = name) -> None:
                ins = [a for a in args if isinstance(a, torch.Tensor)]
                seen.setdefault(name, (ins, [output] if isinstance(output, torch.Tensor) else []))

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            probe()
    finally:
        for handle in handles:
            handle.remove()
    for index, group in enumerate(groups):
        for before, after in zip(group, group[1:]):
            if before not in seen or after not in seen:
                unused = before if before not in seen else after
                raise UserError(f"{where(f'prepare.fuse[{index}]')}: module {unused!r} is not called in a forward pass, so it cannot be fused")
            if not any(a is b for a in seen[after][0] for b in seen[before][1]):
                raise UserError(
                    f"{where(f'prepare.fuse[{index}]')}: expected {after!r} to take {before!r}'s output in the forward pass, "
                    "but it takes another tensor; fusing them would change what the model computes"
                )


def _pairs(model: Any) -> list[tuple[Any, int]]:
    """(container, index) of every child of an nn.Sequential: the one place where "the layer
    after this one" is known without tracing."""
    import torch

    return [(m, i) for m in model.modules() if isinstance(m, torch.nn.Sequential) for i in range(len(m) - 1)]


def _fold_batchnorms(model: Any) -> int:
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    count = 0
    for container, index in _pairs(model):
        layer, norm = container[index], container[index + 1]
        if not isinstance(norm, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)) or not norm.track_running_stats:
            continue
        if type(layer).__name__ in CONVS and isinstance(layer, torch.nn.modules.conv._ConvNd):
            container[index] = fuse_conv_bn_eval(layer.eval(), norm.eval())
        elif isinstance(layer, torch.nn.Linear):
            container[index] = fuse_linear_bn_eval(layer.eval(), norm.eval())
        else:
            continue
        container[index + 1] = torch.nn.Identity()
        count += 1
    return count


def _fuse_relus(model: Any) -> int:
    """Conv or Linear followed by ReLU (identities from folding skipped) become one
    ``torch.ao.nn.intrinsic`` module: what quantisers and backends match as one kernel."""
    import torch
    import torch.ao.nn.intrinsic as nni

    fused_types = {torch.nn.Conv1d: nni.ConvReLU1d, torch.nn.Conv2d: nni.ConvReLU2d, torch.nn.Conv3d: nni.ConvReLU3d, torch.nn.Linear: nni.LinearReLU}
    count = 0
    for container, index in _pairs(model):
        layer = container[index]
        after = index + 1
        while after < len(container) - 1 and isinstance(container[after], torch.nn.Identity):
            after += 1
        if type(layer) in fused_types and isinstance(container[after], torch.nn.ReLU):
            container[index] = fused_types[type(layer)](layer, torch.nn.ReLU())
            container[after] = torch.nn.Identity()
            count += 1
    return count


def cast_module(module: Any, dtype_name: str) -> Any:
    """The module with its weights in ``dtype_name``, taking and returning float32 tensors, so
    the artifact's interface (and every runtime's feeds) stays what the manifest declares."""
    import torch

    dtype = getattr(torch, dtype_name)

    class Cast(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner.to(dtype)

        def forward(self, *inputs: Any) -> Any:
            cast = [x.to(dtype) if x.is_floating_point() else x for x in inputs]
            return _to_float32(self.inner(*cast))

    return Cast(module).eval()


def _to_float32(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    return value
