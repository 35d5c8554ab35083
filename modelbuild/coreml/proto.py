"""coremltools' protobuf classes without importing coremltools.

``import coremltools`` takes seconds (it imports torch and every frontend); writing metadata
into a package needs only ``Model_pb2``. We import coremltools' generated ``proto`` modules
under their real names, behind a placeholder parent package, then drop the placeholder. A
later real ``import coremltools`` finds ``coremltools.proto`` already loaded and reuses the
very same modules, so protobuf never sees a descriptor registered twice.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def model_pb2() -> Any:
    if "coremltools.proto.Model_pb2" in sys.modules:
        return sys.modules["coremltools.proto.Model_pb2"]
    if "coremltools" in sys.modules:
        return importlib.import_module("coremltools.proto.Model_pb2")
    spec = importlib.util.find_spec("coremltools")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("coremltools is not installed: pip install 'modelbuild[convert]'")
    root = os.path.dirname(spec.origin)
    placeholder = types.ModuleType("coremltools")
    placeholder.__path__ = [root]
    proto_package = types.ModuleType("coremltools.proto")
    proto_package.__path__ = [os.path.join(root, "proto")]
    sys.modules["coremltools"] = placeholder
    sys.modules["coremltools.proto"] = proto_package
    try:
        return importlib.import_module("coremltools.proto.Model_pb2")
    finally:
        del sys.modules["coremltools"]
