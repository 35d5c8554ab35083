"""The Linux executor for Core ML ``neuralnetwork`` packages: the spec's layers evaluated in
order with PyTorch CPU kernels, from the package bytes that ship (no coremltools import).

``runner`` loads a package and runs it; ``layers`` holds one function per layer type,
registered by name. A layer without an implementation is named in one message, never
computed as zeros.
"""
