"""Layer implementations by family; importing this package registers them all."""

from modelbuild.neuralnetwork.layers import convolution, dense, elementwise, normalization, recurrent, shape  # noqa: F401
