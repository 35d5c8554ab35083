"""MIL op implementations by family; importing this package registers them all."""

from modelbuild.mil.ops import control, elementwise, nn, recurrent, tensor  # noqa: F401
