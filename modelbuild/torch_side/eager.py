"""The wrapped PyTorch model in eager mode: what capture captures, what verification trusts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from modelbuild.errors import Location


def build_prepared(
    context: dict[str, Any],
    source: Path,
    wrapper: dict[str, Any],
    where: Callable[[str], Location],
    changes: dict[str, Any] | None = None,
    runtime: bool = False,
) -> tuple[Any, Any, list[str]]:
    """(prepared module, the user's module, notes): built from the ``source`` stage's output
    (its snapshot of code and weights), classes replaced, eval mode, fp32; with ``changes``
    (the manifest's ``prepare``) folded and fused as asked. The reference outputs come from
    the module built without ``changes``, and for an ONNX source from ONNX Runtime on the file
    (``runtime``)."""
    from modelbuild.manifest.shapes import fixed_shapes
    from modelbuild.torch_side import prepare as preparation
    from modelbuild.torch_side.loading import build_module, seeded
    from modelbuild.torch_side.samples import make_inputs
    from modelbuild.torch_side.wrapper import prepare, replace_modules
    from modelbuild.usercode.source_tree import SourceTree

    model = build_module(context["source"], SourceTree.of(source), where, runtime=runtime, fixed=fixed_shapes(context["inputs"]))
    with seeded():  # a replacement class or a wrapper may make layers of its own
        notes = [f"replaced {r}" for r in replace_modules(model, wrapper["replace"], where)]
        model.eval()
        prepared = prepare(model, context["inputs"], context["outputs"], wrapper, where, channels_last=bool(changes and changes.get("channels_last")))
    if changes:
        # Prepared holds the model itself, so the in-place rewrites below reach it; the probe
        # runs it once for the checks of explicit fusion groups.
        notes += preparation.apply(model, changes, probe=lambda: prepared(*make_inputs(context["inputs"], "default", seed=0)), where=where)
        prepared.eval()  # the rewrites add modules (the Identity a folded norm leaves) in training mode
    return prepared, model, notes


def flatten(value: Any) -> list[Any]:
    """A model's (selected) return value as a flat list of tensors, in a stable order."""
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in flatten(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in flatten(v)]
    return [value]


def run_numpy(module: Any, feeds: list[Any]) -> list[Any]:
    """Call a torch module on numpy feeds; numpy outputs (fp32 or the model's dtype)."""
    import torch

    with torch.no_grad():
        result = module(*[torch.from_numpy(f) for f in feeds])
    return [t.detach().cpu().numpy() for t in flatten(result)]
