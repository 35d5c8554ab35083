"""Magnitude pruning of float16 weights prunes nothing in coremltools 9.0."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from modelbuild.coreml.compat import COMPAT, Compat


@COMPAT.register
class Float16Pruning(Compat):
    name = "float16_pruning"
    phase = "optimize"
    fixes = (
        "optimize prune with sparsity on a float16 program: the threshold is computed in float16, overflows for "
        "weights of more than 65504 elements, and the 'sparse' weight comes out larger than the dense one"
    )
    does = "ranks magnitudes in float32 and stores the kept values in float16"

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[None]:
        import numpy as np
        from coremltools.optimize.coreml import _quantization_passes as passes

        original = passes.prune_weights.compress_by_magnitude

        def ranked_in_float32(val: Any, target_sparsity: float, block_size: Any = None, dim: Any = None) -> Any:
            if val.dtype != np.float16:
                return original(val, target_sparsity, block_size, dim)
            params = original(val.astype(np.float32), target_sparsity, block_size, dim)
            if params is None:
                return None
            return type(params)(nonzero_data=params.nonzero_data.astype(np.float16), mask=params.mask, shape=params.shape)

        passes.prune_weights.compress_by_magnitude = staticmethod(ranked_in_float32)
        try:
            yield
        finally:
            passes.prune_weights.compress_by_magnitude = staticmethod(original)
