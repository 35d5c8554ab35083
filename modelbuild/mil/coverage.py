"""Writes docs/mil-ops.md from the op registry: ``python -m modelbuild.mil.coverage > docs/mil-ops.md``.

The test suite checks the page against the registry and the example packages, so the table a
person reads is the table the code implements.
"""

from __future__ import annotations

from modelbuild.mil.registry import TABLE, supported_ops

FAMILIES = {
    "elementwise": "Elementwise, activations, comparisons, cast",
    "nn": "Layers: convolution, linear algebra, normalisation, pooling, resizing, padding",
    "tensor": "Shape, indexing, scatter, reductions, sorting",
    "recurrent": "Recurrent layers",
    "control": "Control flow and classifier head",
}

INTRO = """# MIL ops the Linux executor runs

`modelbuild.mil` evaluates ML-program packages with PyTorch CPU kernels (`modelbuild/mil/`).
Semantics follow coremltools' op definitions (`coremltools/converters/mil/mil/ops/defs`).
The test suite fails if an example manifest produces an op missing here
(`tests/mil/test_coverage.py`); an op outside this table fails with a message naming the op
and the package: nothing is ever computed as zeros. Regenerate with
`python -m modelbuild.mil.coverage > docs/mil-ops.md`.

Also handled without an entry: `const`, and the `constexpr_*` weight-decompression ops
(affine dequantize, lookup table to dense, sparse to dense, blockwise shift-scale), whose
dense values come from each op's own definition in coremltools
(`materialized_val_inference`) applied to the package's weight blobs.

Float16: a float16 program computes in float16 on the CPU here, op by op, as the program
states its dtypes. Where PyTorch has no float16 CPU kernel, that op computes in float32 and
rounds its result to float16. The Neural Engine and GPU accumulate differently (often wider
inside one op), so float16 results can differ from a device by rounding; the float16 Core ML
tolerance (5e-2) allows for it. Recurrent layers are unrolled step by step.
"""


def markdown() -> str:
    supported_ops()  # registers every implementation
    return TABLE.markdown(INTRO, FAMILIES, "ops")


if __name__ == "__main__":
    print(markdown(), end="")
