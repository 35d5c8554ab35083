"""Manifest ``optimize`` steps to ``coremltools.optimize.coreml`` calls.

Each step maps onto one coremltools compression function and one op config; the manifest's
field names are coremltools' own where they exist (``nbits``, ``granularity``,
``weight_threshold``), so its documentation applies as written.
"""

from __future__ import annotations

from typing import Any, Callable


def step_kind(step: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ((kind, options),) = step.items()
    return kind, dict(options or {})


def describe(step: dict[str, Any]) -> str:
    """A short label for the summary: ``palettize 4-bit kmeans``."""
    kind, o = step_kind(step)
    if kind == "quantize":
        return f"quantize {o.get('dtype', 'int8')} {o.get('granularity', 'per_channel')}"
    if kind == "palettize":
        return f"palettize {o['nbits']}-bit {o.get('mode', 'kmeans')}"
    return f"prune {o['sparsity']:.0%}" if "sparsity" in o else f"prune |w| <= {o['threshold']:g}"


def op_config(ct: Any, kind: str, options: dict[str, Any]) -> Any:
    cto = ct.optimize.coreml
    common = {k: options[k] for k in ("weight_threshold",) if k in options}
    if kind == "quantize":
        return cto.OpLinearQuantizerConfig(
            mode=options.get("mode", "linear_symmetric"),
            dtype=options.get("dtype", "int8"),
            granularity=options.get("granularity", "per_channel"),
            block_size=options.get("block_size", 32),
            **common,
        )
    if kind == "palettize":
        extra = {"group_size": options["group_size"]} if "group_size" in options else {}
        return cto.OpPalettizerConfig(
            nbits=options["nbits"], mode=options.get("mode", "kmeans"), granularity=options.get("granularity", "per_tensor"), **extra, **common
        )
    if "sparsity" in options:
        extra = {"block_size": options["block_size"]} if "block_size" in options else {}
        return cto.OpMagnitudePrunerConfig(target_sparsity=float(options["sparsity"]), **extra, **common)
    return cto.OpThresholdPrunerConfig(threshold=float(options["threshold"]), **common)


def optimization_config(ct: Any, kind: str, options: dict[str, Any]) -> Any:
    """Op-type and op-name selection are coremltools' own; without them the step is global."""
    config = op_config(ct, kind, options)
    cto = ct.optimize.coreml
    if options.get("op_types") or options.get("op_names"):
        return cto.OptimizationConfig(
            op_type_configs={t: config for t in options.get("op_types", [])} or None, op_name_configs={n: config for n in options.get("op_names", [])} or None
        )
    return cto.OptimizationConfig(global_config=config)


def compressor(ct: Any, kind: str) -> Callable[..., Any]:
    cto = ct.optimize.coreml
    return {"quantize": cto.linear_quantize_weights, "palettize": cto.palettize_weights, "prune": cto.prune_weights}[kind]


def needs_sklearn(step: dict[str, Any]) -> bool:
    kind, options = step_kind(step)
    return kind == "palettize" and options.get("mode", "kmeans") == "kmeans"
