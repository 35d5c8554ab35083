"""Resizing to a size computed from a flexible input (a segmentation head that upsamples its
output back to the input's H×W) does not convert in coremltools 9.0.

coremltools lowers ``upsample_bilinear2d``/``upsample_nearest2d`` to its own torch-dialect op and
later rewrites that to ``upsample_*`` with a *constant* scale; a run-time size fails with
"Unable to map torch_upsample_bilinear to core upsample" (trace and export, ranged and
enumerated shapes alike). Here a run-time size becomes:

* bilinear: the iOS17 ``resize`` op, whose target shape is a run-time input, sampling
  ``UNALIGN_CORNERS`` (PyTorch ``align_corners=False``) or ``STRICT_ALIGN_CORNERS`` (``True``);
* nearest: an integer index gather, ``src = min(dst * in // out, in - 1)`` per axis, because
  Core ML's nearest-neighbour ``resize`` rounds (PyTorch's ``nearest-exact``) where PyTorch's
  ``nearest`` floors. Integer arithmetic also keeps float16 programs from bending the indices.

Constant sizes and the scale-factor patterns coremltools resolves keep coremltools' own path.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from modelbuild.coreml.compat import COMPAT, Compat


@COMPAT.register
class ResizeToInput(Compat):
    name = "resize_to_input"
    phase = "convert"
    fixes = (
        "F.interpolate(size=<computed from a flexible input>) with bilinear or nearest mode: "
        "'Unable to map torch_upsample_bilinear to core upsample' (trace and export, ranged and enumerated shapes)"
    )
    does = "bilinear: the iOS17 resize op with a run-time shape; nearest: an exact integer index gather"

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[None]:
        from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op

        originals = {name: _TORCH_OPS_REGISTRY.get_func(name) for name in ("upsample_bilinear2d", "upsample_nearest2d")}
        bilinear, nearest = _translations(originals)
        for function, name in ((bilinear, "upsample_bilinear2d"), (nearest, "upsample_nearest2d")):
            function.__name__ = name
            register_torch_op(function, torch_alias=[f"{name}.vec"], override=True)
        try:
            yield
        finally:
            for name, function in originals.items():
                for key in (name, f"{name}.vec"):
                    _TORCH_OPS_REGISTRY.set_func_by_name(function, key)


def _translations(originals: dict[str, Any]) -> tuple[Any, Any]:
    import numpy as np
    from coremltools.converters.mil._deployment_compatibility import AvailableTarget as target
    from coremltools.converters.mil.frontend.torch import ops
    from coremltools.converters.mil.frontend.torch.ssa_passes import torch_upsample_to_core_upsample as rewrite
    from coremltools.converters.mil.mil import Builder as mb
    from coremltools.converters.mil.mil import types
    from coremltools.converters.mil.mil.block import is_current_opset_version_compatible_with

    def runtime_size(node: Any, x: Any, size: Any) -> list[Any] | None:
        """[h, w] as int32 scalars when the size is known only at run time, else None."""
        if size is None:
            return None
        elems = list(size) if isinstance(size, (list, tuple)) else None
        if elems is None:
            if size.val is not None:
                return None
            elems = [mb.gather(x=size, indices=i, axis=0) for i in (0, 1)]
        if len(elems) != 2 or all(e.val is not None for e in elems):
            return None
        if not is_current_opset_version_compatible_with(target.iOS17):
            raise ValueError(
                f"{node.kind} {node.name!r}: the output size depends on a flexible input's shape; converting it "
                "needs the iOS17 resize op: set targets.coreml.deployment_target to iOS17 or later"
            )
        elems = [(e if e.dtype == types.int32 else mb.cast(x=e, dtype="int32")) if e.val is None else mb.const(val=np.int32(e.val)) for e in elems]
        try:  # size=(h*k, w*k): coremltools' own constant-scale rewrite handles it
            factors = [rewrite._try_get_upsample_factor_pattern_1(e.op) for e in elems]
            if None in factors:
                factors = [rewrite._try_get_upsample_factor_pattern_2(e.op, i, x) for e, i in zip(elems, (2, 3))]
            if None not in factors:
                return None
        except Exception:  # noqa: BLE001 - a private helper: when it cannot tell, resize at run time
            pass
        return elems

    def dim(x: Any, axis: int) -> Any:
        d = x.shape[axis]
        return mb.const(val=np.int32(d)) if isinstance(d, (int, np.integer)) else mb.gather(x=mb.shape(x=x), indices=np.int32(axis), axis=0)

    def nearest_index(in_dim: Any, out_dim: Any) -> Any:
        dst = mb.range_1d(start=np.int32(0), end=out_dim, step=np.int32(1))
        return mb.minimum(x=mb.floor_div(x=mb.mul(x=dst, y=in_dim), y=out_dim), y=mb.sub(x=in_dim, y=np.int32(1)))

    def bilinear(context: Any, node: Any) -> None:
        inputs = ops._get_inputs(context, node, min_expected=3)
        x, size = inputs[0], inputs[1]
        hw = runtime_size(node, x, size)
        if hw is None:
            return originals["upsample_bilinear2d"](context, node)
        if x.dtype not in (types.fp16, types.fp32):
            x = mb.cast(x=x, dtype="fp32")
        mode = "STRICT_ALIGN_CORNERS" if bool(inputs[2].val) else "UNALIGN_CORNERS"
        shape = mb.concat(values=[mb.expand_dims(x=v, axes=[0]) for v in hw], axis=0)
        context.add(mb.resize(x=x, shape=shape, resized_dims=np.uint32(2), interpolation_mode="LINEAR", sampling_mode=mode, name=node.name))

    def nearest(context: Any, node: Any) -> None:
        inputs = ops._get_inputs(context, node, min_expected=2)
        x, size = inputs[0], inputs[1]
        hw = runtime_size(node, x, size)
        if hw is None:
            return originals["upsample_nearest2d"](context, node)
        rank = x.rank
        y = mb.gather(x=x, indices=nearest_index(dim(x, rank - 2), hw[0]), axis=rank - 2)
        context.add(mb.gather(x=y, indices=nearest_index(dim(x, rank - 1), hw[1]), axis=rank - 1, name=node.name))

    return bilinear, nearest
