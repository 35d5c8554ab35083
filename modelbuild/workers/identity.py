"""What a warm server must share with the build that uses it, or be replaced.

A server imported its libraries once; if any of them, modelbuild itself, the interpreter or a
variable read at import time has changed since, its forks would run yesterday's code. The
identity is cheap to compute (no heavy import) and says, when two differ, what changed.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from blake3 import blake3

# Distributions whose code runs in a stage (the toolchain) or shapes what it computes.
TOOLS = ("torch", "coremltools", "executorch", "onnx", "onnxruntime", "onnxscript", "numpy", "scikit-learn", "safetensors", "transformers", "torchao")

# Variables read by the libraries when they load or first run (CPU kernels, thread pools,
# allocators, library paths, hashing): a fork inherits the server's values, so a build whose
# values differ needs another server. Matched by prefix.
PREFIXES = (
    "ATEN_",
    "OMP_",
    "KMP_",
    "GOMP_",
    "MKL_",
    "OPENBLAS_",
    "DNNL_",
    "ONEDNN_",
    "TORCH",
    "PYTORCH_",
    "COREML",
    "ORT_",
    "ONNX",
    "EXECUTORCH",
    "XNNPACK",
    "PYTHON",
    "LD_",
    "CUDA_",
    "HF_",
    "TRANSFORMERS_",
    "TOKENIZERS_",
    "TF_",
    "NUMPY_",
    "LC_",
)
NAMES = ("PATH", "HOME", "LANG", "TMPDIR")
# modelbuild's own variables that choose how the build runs, not what a stage computes.
COORDINATOR_ONLY = (
    "MODELBUILD_FASTPATH",
    "MODELBUILD_WORKERS",
    "MODELBUILD_WORKERS_IDLE",
    "MODELBUILD_WORKERS_DIR",
    "MODELBUILD_REMOTE",
    "MODELBUILD_REMOTE_PUSH",
    "MODELBUILD_DELEGATED",  # set in the fork that runs a handed-over build (modelbuild.workers.delegate)
)


_CHECKED: dict[str, Any] | None = None  # set in a fork the server checked (see ``checked``)


def identity(here: str | None = None) -> dict[str, Any]:
    """This process's identity, as a JSON-able dict two processes can compare. ``here``: the
    working folder of the build it is compared with (the server's own is ``/``)."""
    if here is None and _CHECKED is not None:
        return dict(_CHECKED)
    from modelbuild import __version__

    return {
        "modelbuild": __version__,
        "code": _code_digest(),
        "python": [sys.executable, sys.version],
        "tools": {name: _version(name) for name in TOOLS},
        "packages": _packages_digest(here),
        "environment": relevant_environment(dict(os.environ)),
        "sys_path": search_path(here),
    }


def checked(known: dict[str, Any]) -> None:
    """In a fork of the server that runs a handed-over build: the build's identity is the one
    its client sent, which the server found equal to its own (a fork has the server's code,
    tools and interpreter, and takes the client's folder, environment and import path).
    Computing it again would stat every source file and package folder: 10 ms of a build that
    should take a few dozen."""
    global _CHECKED
    _CHECKED = dict(known)


def relevant_environment(environ: dict[str, str]) -> dict[str, str]:
    """The variables of ``environ`` that can change what a stage computes."""
    kept = {}
    for name, value in environ.items():
        if name in COORDINATOR_ONLY:
            continue
        if name in NAMES or name.startswith(PREFIXES) or name.startswith("MODELBUILD_"):
            kept[name] = value
    return dict(sorted(kept.items()))


def differences(server: dict[str, Any], build: dict[str, Any]) -> list[str]:
    """What changed between a server's identity and this build's, in words (empty: the same)."""
    said = []
    for field in ("modelbuild", "code", "python", "packages", "sys_path"):
        if server.get(field) != build.get(field):
            said.append(
                {
                    "modelbuild": f"modelbuild {server.get('modelbuild')} -> {build.get('modelbuild')}",
                    "code": "modelbuild's code changed",
                    "python": "another interpreter",
                    "packages": "installed packages changed",
                    "sys_path": "another import path (sys.path)",
                }[field]
            )
    old_tools, new_tools = server.get("tools", {}), build.get("tools", {})
    for name in sorted(set(old_tools) | set(new_tools)):
        if old_tools.get(name) != new_tools.get(name):
            said.append(f"{name} {old_tools.get(name)} -> {new_tools.get(name)}")
    old_env, new_env = server.get("environment", {}), build.get("environment", {})
    changed = sorted(name for name in set(old_env) | set(new_env) if old_env.get(name) != new_env.get(name))
    if changed:
        said.append("environment: " + ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else ""))
    return said


def search_path(here: str | None = None) -> list[str]:
    """``sys.path`` as far as it is the same for every build of the project: without its first
    entry (the script's folder) and the build's working folder (``PYTHONPATH=.``, or the
    project's own path in ``PYTHONPATH``: the server starts in ``/`` and is told the folder of
    the build that started it)."""
    here = os.path.abspath(here or os.getcwd())
    return [entry for entry in sys.path[1:] if entry and os.path.abspath(entry) not in (here, os.getcwd())]


def _version(distribution: str) -> str:
    from modelbuild.versions import installed_version

    return installed_version(distribution)


def _code_digest() -> str:
    """modelbuild's own source files by stat signature: an editable checkout changes under
    one version number, and a server running the old code must not serve the new. (Plain
    strings and blake3 rather than pathlib and hashlib: the thin client computes this on every
    build, and OpenSSL alone takes 2 ms to load.)"""
    digest = blake3()
    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    for root, dirs, names in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")  # walked in this order
        for name in sorted(names):
            if name.endswith((".py", ".json")):
                digest.update(_signature(os.path.join(root, name)).encode())
    return digest.hexdigest()[:20]


def _packages_digest(here: str | None) -> str:
    """The folders on sys.path by stat signature: installing, upgrading or removing any
    package changes its site-packages folder (what a version list alone might miss)."""
    digest = blake3()
    for entry in search_path(here):
        if os.path.isdir(entry):
            digest.update(_signature(entry).encode())
    return digest.hexdigest()[:20]


def _signature(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
