"""Manifests: finding, parsing (with line numbers), validating and resolving them."""

from modelbuild.manifest.spec import ModelSpec
from modelbuild.manifest.load import load_models, find_manifest_files

__all__ = ["ModelSpec", "load_models", "find_manifest_files"]
