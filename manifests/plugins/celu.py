"""A modelbuild plugin: teaches coremltools ``aten::celu`` as a composite of existing MIL ops.

    celu(x) = max(0, x) + min(0, alpha * (exp(x / alpha) - 1))

Listed under ``plugins:`` in a manifest, it is imported before conversion; its content is
part of the conversion key, so editing it re-converts the models that use it.
"""

import numpy as np
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.frontend.torch.ops import _get_inputs
from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op


@register_torch_op(override=True)
def celu(context, node):
    x, alpha = _get_inputs(context, node, expected=2)
    a = np.array(alpha.val if alpha.val is not None else 1.0, dtype=np.float32).astype(x.dtype.__name__ == "fp16" and np.float16 or np.float32)
    positive = mb.relu(x=x)
    negative = mb.mul(x=mb.sub(x=mb.exp(x=mb.real_div(x=x, y=a)), y=a.dtype.type(1)), y=a)
    context.add(mb.add(x=positive, y=mb.minimum(x=negative, y=a.dtype.type(0)), name=node.name))
