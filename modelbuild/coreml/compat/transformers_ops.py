"""Operators Hugging Face transformers' masking and attention code emits that coremltools 9.0
cannot convert, found by converting BERT, DistilBERT, RoBERTa, GPT-2, ViT, ResNet and
MobileNetV2 (random-init configs) by trace and by torch.export:

* ``new_ones`` has no conversion ("PyTorch convert function for op 'new_ones' not
  implemented"); coremltools' ``new_zeros`` ignores ``dtype`` and fails on an empty size,
  which ``masking_utils`` uses (``q_idx.new_zeros((), dtype=torch.bool)``);
* ``bitwise_or``/``__or__`` and ``bitwise_xor`` have none, and the ``__and__`` kind
  torch.export writes is not found under coremltools' ``bitwise_and``;
* torch.export writes ``where.ScalarOther``/``where.Scalar`` and ``alias``, which coremltools
  registers only under other names.

Each conversion is built from MIL ops coremltools already has; the registry is restored
exactly after the conversion, so nothing leaks into another model's conversion.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from modelbuild.coreml.compat import COMPAT, Compat


@COMPAT.register
class TransformersOps(Compat):
    name = "transformers_ops"
    phase = "convert"
    fixes = (
        "Hugging Face masking and attention code: 'PyTorch convert function for op 'new_ones' not implemented', "
        "new_zeros with a dtype or an empty size, bitwise_or/xor, and torch.export's __and__, where.ScalarOther and alias kinds"
    )
    does = "conversions of these operators from existing MIL ops (fill or const, logical_and/or/xor, select, identity)"

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[None]:
        from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

        saved = dict(_TORCH_OPS_REGISTRY.name_to_func_mapping)
        try:
            for name, function in _conversions().items():
                _TORCH_OPS_REGISTRY.set_func_by_name(function, name)
            yield
        finally:
            _TORCH_OPS_REGISTRY.name_to_func_mapping.clear()
            _TORCH_OPS_REGISTRY.name_to_func_mapping.update(saved)


def _conversions() -> dict[str, Any]:
    import numpy as np
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import NUM_TO_NUMPY_DTYPE, _get_inputs, _get_kwinputs
    from coremltools.converters.mil.frontend.torch.ops import where as coreml_where
    from coremltools.converters.mil.frontend.torch.utils import TorchFrontend
    from coremltools.converters.mil.mil import types
    from coremltools.converters.mil.mil.types.type_mapping import nptype_from_builtin

    def filled(context: Any, node: Any, value: int) -> None:
        """``x.new_ones(size, dtype=...)`` and ``new_zeros``: ``dtype`` defaults to ``x``'s; Core ML
        fills hold float16/32, int32 or bool, so other integers become int32, doubles float32."""
        inputs = _get_inputs(context, node, expected={TorchFrontend.TORCHSCRIPT: 6}, min_expected={TorchFrontend.TORCHEXPORT: 2, TorchFrontend.EXECUTORCH: 2})
        x, size = inputs[0], inputs[1]
        dtype = _get_kwinputs(context, node, "dtype", default=[inputs[2] if len(inputs) > 2 else None])[0]
        wanted = NUM_TO_NUMPY_DTYPE[int(dtype.val)] if dtype is not None and dtype.val is not None else nptype_from_builtin(x.dtype)
        if wanted == np.bool_:
            wanted = bool
        elif np.issubdtype(wanted, np.integer):
            wanted = np.int32
        elif np.issubdtype(wanted, np.floating) and wanted != np.float16:
            wanted = np.float32
        if isinstance(size, list):  # a run-time size: scalars become one shape vector
            size = mb.concat(values=[mb.expand_dims(x=s, axes=[0]) if s.rank == 0 else s for s in size], axis=0)
        if size.can_be_folded_to_const():
            shape = tuple(int(s) for s in np.array(size.val).reshape(-1))
            result = mb.const(val=np.full(shape, value).astype(wanted), name=node.name)
        else:
            if types.is_float(size.dtype):
                size = mb.cast(x=size, dtype="int32")
            fill = bool(value) if wanted is bool else np.array(value).astype(wanted).item()
            result = mb.fill(shape=size, value=fill, name=node.name)
        context.add(result)

    def new_ones(context: Any, node: Any) -> None:
        filled(context, node, 1)

    def new_zeros(context: Any, node: Any) -> None:
        filled(context, node, 0)

    def logical(op: Any, torch_name: str) -> Any:
        def convert(context: Any, node: Any) -> None:
            x, y = _get_inputs(context, node, expected=2)
            if not (types.is_bool(x.dtype) and types.is_bool(y.dtype)):
                raise NotImplementedError(f"the {torch_name} conversion takes boolean tensors (masks), got {x.dtype} and {y.dtype}")
            context.add(op(x=x, y=y, name=node.name))

        return convert

    def alias(context: Any, node: Any) -> None:
        context.add(_get_inputs(context, node, expected=1)[0], torch_name=node.name)

    both_and = logical(mb.logical_and, "bitwise_and")
    both_or = logical(mb.logical_or, "bitwise_or")
    both_xor = logical(mb.logical_xor, "bitwise_xor")
    return {
        "new_ones": new_ones,
        "new_zeros": new_zeros,
        "new_empty": new_zeros,  # its values are unspecified; zeros are one valid choice
        # register_torch_op refuses names ending in "_" (in-place ops): the dunder kinds that
        # torch.export writes go straight into the registry.
        "__and__": both_and,
        "bitwise_or": both_or,
        "or": both_or,
        "__or__": both_or,
        "bitwise_xor": both_xor,
        "xor": both_xor,
        "__xor__": both_xor,
        "where.scalarother": coreml_where,
        "where.scalar": coreml_where,
        "alias": alias,
    }
