"""Manifests: finding, parsing (with line numbers), validating and resolving them."""

from modelbuild.manifest.load import find_manifest_files, load_models
from modelbuild.manifest.spec import ModelSpec

__all__ = ["ModelSpec", "load_models", "find_manifest_files"]
