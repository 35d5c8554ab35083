"""A reference executor for Core ML ML programs, on Linux, with PyTorch CPU kernels.

It reads the package that ships (the protobuf and the weights blob, through coremltools'
own milproto loader) and evaluates each MIL operation in program order, so conversion
faults reach the build instead of the app. See docs/mil-ops.md for the supported ops.
"""
