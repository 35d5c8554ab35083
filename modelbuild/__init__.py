"""modelbuild: declarative, cached, reproducible builds of PyTorch models for on-device runtimes."""

__version__ = "0.1.0"
