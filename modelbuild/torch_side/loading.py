"""Building the user's module: import the factory, call it, load weights without running code."""

from __future__ import annotations

import importlib
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from modelbuild.errors import Location, UserError, first_line

if TYPE_CHECKING:
    from modelbuild.usercode.source_tree import SourceTree


def import_object(spec: str, where: Location, what: str = "factory") -> Any:
    """Import ``module:attr`` (``attr`` may be dotted) and explain precisely what went wrong."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
        raise UserError(f"{where}: cannot import module {module_name!r} of {what} {spec!r}: {type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_"))
            import difflib

            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {module_name}:{close[0]}?)" if close else ""
            raise UserError(f"{where}: module {module_name!r} has no attribute {attr!r}{hint}")
        obj = getattr(obj, part)
    return obj


def import_class_path(path: str, where: Location) -> Any:
    """Import a dotted class path like ``torch.nn.ReLU``."""
    module_name, _, name = path.rpartition(".")
    return import_object(f"{module_name}:{name}", where, what="class")


SEED = 0


@contextmanager
def seeded() -> Iterator[None]:
    """Torch's, numpy's and Python's random generators seeded with ``SEED`` while the user's
    code builds the model, and given back their state afterwards.

    Every stage builds the model anew, in a fresh worker or a warm fork whose generator the
    warm-up has moved on. Whatever the model initialises at random and no weights file
    overwrites (no ``source.weights``, ``strict: false``, a random buffer) would otherwise be
    drawn differently by the reference and by each export: artifacts that fail verification
    at random, and warm builds that differ from cold ones. Seeded, every stage and every build
    on this machine draws the same values. (Torch's normal distribution is drawn by
    instruction-set-specific kernels, so another CPU may still draw other values: a release
    ships its weights.)"""
    import random

    import numpy as np
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        random.seed(SEED)
        np.random.seed(SEED)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def load_state_dict(path: Path, where: Location, name: str | None = None) -> dict[str, Any]:
    """Read a state dict without ever unpickling arbitrary code. ``name``: the file as the user
    knows it (the snapshot in the store has no suffix); its suffix picks the format."""
    import torch

    shown = Path(name or path.name)
    if shown.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{where}: cannot read {shown.name} as safetensors: {exc}") from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        if "Weights only load failed" in str(exc):
            # torch's own text suggests weights_only=False; modelbuild never unpickles code.
            raise UserError(
                f"{where}: {shown.name} is not a tensor-only checkpoint: loading it would run code from the pickle, "
                "which modelbuild never does; save the state_dict with safetensors (safetensors.torch.save_file) "
                "or torch.save of plain tensors"
            ) from None
        raise UserError(f"{where}: cannot read {shown.name} as a tensor-only checkpoint: {first_line(exc)}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{where}: expected a state dict of tensors in {shown.name}, got {type(state).__name__}")
    return state


def build_module(
    source: dict[str, Any], tree: "SourceTree", where: Callable[[str], Location], runtime: bool = False, fixed: dict[str, list[int]] | None = None
) -> Any:
    """The user's model, weights loaded, in eval mode (always, before any capture), built from
    the source snapshot ``tree``: its code imported from there, its weights read from there.
    ``runtime``: for an ONNX source, ONNX Runtime on the file itself (what references trust);
    ``fixed``: the input shapes when none is flexible (an ONNX graph's shape arithmetic folds)."""
    import torch

    tree.importable()
    if "torchscript" in source:
        path = tree.path("torchscript")
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{where('source.torchscript')}: cannot load {Path(tree.layout['torchscript']).name} as TorchScript: {exc}") from exc
        return module.eval()
    if "onnx" in source:
        from modelbuild.torch_side import onnx_source

        shown = Path(tree.layout["onnx"]).name
        if runtime:
            return onnx_source.runtime_module(tree.path("onnx"), where("source.onnx"), shown)
        return onnx_source.to_module(tree.path("onnx"), where("source.onnx"), shown, fixed)
    if "exported_program" in source:
        path = tree.path("exported_program")
        try:
            program = torch.export.load(str(path))
        except Exception as exc:  # noqa: BLE001
            name = Path(tree.layout["exported_program"]).name
            raise UserError(f"{where('source.exported_program')}: cannot load {name} with torch.export.load: {exc}") from exc
        return program.module()
    factory = import_object(source["factory"], where("source.factory"))
    try:
        with seeded():
            module = factory(**source.get("args", {}))
    except Exception as exc:  # noqa: BLE001
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise UserError(
            f"{where('source.factory')}: factory {source['factory']!r} raised {type(exc).__name__}: {exc} "
            f"(at {Path(frame.filename).name}:{frame.lineno}; {_hint(exc)})"
        ) from exc
    if not isinstance(module, torch.nn.Module):
        raise UserError(f"{where('source.factory')}: expected the factory to return a torch.nn.Module, got {type(module).__name__}")
    if "weights" in source:
        state = load_state_dict(tree.path("weights"), where("source.weights"), name=tree.layout["weights"])
        _load_weights(module, state, bool(source.get("strict", True)), where("source.weights"))
    return module.eval()


def _load_weights(module: Any, state: dict[str, Any], strict: bool, where: Location) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    parts = []
    if mismatched:
        shown = ", ".join(f"{k} (model {tuple(own[k].shape)}, file {tuple(state[k].shape)})" for k in mismatched[:3])
        parts.append(f"shape mismatch for {len(mismatched)} key(s): {shown}")
    if strict and missing:
        parts.append(f"missing {len(missing)} key(s): {_few(missing)}")
    if strict and unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {_few(unexpected)}")
    if parts:
        hint = "; set source.strict: false to load only the keys that match" if not mismatched else "; check source.args against the weights"
        raise UserError(f"{where}: the weights do not match the model: " + "; ".join(parts) + hint)
    module.load_state_dict(state, strict=strict)


def _hint(exc: Exception) -> str:
    """The model is built from a snapshot of the files the manifest declares: a module imported
    by a computed name, or a file read next to ``__file__``, must be declared to be there."""
    if isinstance(exc, ModuleNotFoundError):
        return "a module imported dynamically must be listed in source.code"
    if isinstance(exc, FileNotFoundError):
        return "a file the model code reads must be listed in source.code"
    return "check source.args"


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (f", … ({len(keys) - 4} more)" if len(keys) > 4 else "")
