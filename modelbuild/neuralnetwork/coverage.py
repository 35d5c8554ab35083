"""Writes docs/neuralnetwork-layers.md from the layer registry:
``python -m modelbuild.neuralnetwork.coverage > docs/neuralnetwork-layers.md`` (a test keeps
the page equal to the registry)."""

from __future__ import annotations

from modelbuild.neuralnetwork.registry import TABLE, supported_layers

FAMILIES = {
    "convolution": "Convolution and deconvolution, padding, pooling, upsampling, crop",
    "normalization": "Batch and instance norm, mean-variance, L2 and layer normalisation, softmax",
    "dense": "Inner product, batched matrix multiplication, embeddings",
    "elementwise": "Activations, arithmetic, unary functions, comparisons, clipping",
    "shape": "Reshape, flatten, permute and transpose, concat and split, slices, constants, reductions",
    "recurrent": "Recurrent layers",
}

INTRO = """# NeuralNetwork layers the Linux executor runs

`modelbuild.neuralnetwork` evaluates `neuralnetwork` packages (the format Core ML needs for
unbounded flexible inputs) layer by layer with PyTorch CPU kernels, reading the spec and its
weights from the saved package with the protobuf classes alone. Image inputs go in as uint8
pixels through the package's own preprocessing (`channelScale` and the channel biases).
Semantics follow Core ML's `NeuralNetwork.proto`; `tests/neuralnetwork/test_executor.py`
converts CNN, classifier-head and LSTM models with coremltools and compares every output
with PyTorch. A layer type outside this table fails with one message naming it and the
package: nothing is computed as zeros. Quantized weights are not read (compression applies
to ML programs). Regenerate with `python -m modelbuild.neuralnetwork.coverage > docs/neuralnetwork-layers.md`.
"""


def markdown() -> str:
    supported_layers()  # registers every implementation
    return TABLE.markdown(INTRO, FAMILIES, "layers")


if __name__ == "__main__":
    print(markdown(), end="")
