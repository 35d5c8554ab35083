"""Manifests to a networkx graph of frozen stage nodes. Knows stages and targets by name only."""

from __future__ import annotations

from typing import Any, Iterable

import networkx as nx

from modelbuild.errors import UserError
from modelbuild.graph.node import StageNode, node_id
from modelbuild.manifest.metadata import class_labels
from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES
from modelbuild.targets import TARGETS

CORE_STAGES = ("source", "capture")


def stage_names(model: ModelSpec, targets: Iterable[str] | None = None, bench: bool = True) -> list[str]:
    """Every stage of one model: capture, the reference outputs, then per target its chain,
    its verification and (when ``benchmark.backends`` lists it) its benchmark."""
    wanted = set(targets) if targets else None
    chosen = [t for t in sorted(model.data["targets"]) if wanted is None or t in wanted]
    backends = model.data["benchmark"]["backends"] if bench else []
    names = list(CORE_STAGES)
    if chosen:
        names.append("reference")
    for target in chosen:
        names.extend(TARGETS.get(target).stages)
        names.append(f"{target}.verify")
        if target in backends:
            names.append(f"{target}.bench")
    if "torch" in backends:
        names.append("torch.bench")
    return names


def plan_graph(models: list[ModelSpec], selected: Iterable[str] | None = None, targets: Iterable[str] | None = None, bench: bool = True) -> nx.DiGraph:
    """The stage graph of the selected models (all when ``selected`` is empty)."""
    chosen = set(selected or [])
    names = sorted(m.name for m in models)
    for name in sorted(chosen - set(names)):
        raise UserError(f"--model: expected the name of a model, got {name!r}{_closest(name, names)}; models: {', '.join(names)}")
    for target in targets or []:
        if target not in TARGETS:
            raise UserError(f"--target: expected one of {', '.join(TARGETS.names())}, got {target!r}{_closest(target, TARGETS.names())}")
    graph = nx.DiGraph()
    for model in models:
        if chosen and model.name not in chosen:
            continue
        context = _context(model)
        for name in stage_names(model, targets, bench):
            stage = STAGES.get(name)
            node = StageNode(
                model=model.name,
                stage=name,
                params=stage.params(model),
                files=stage.files(model),
                deps=tuple(node_id(model.name, d) for d in stage.deps),
                context=context,
            )
            graph.add_node(node.id, node=node)
            for dep in node.deps:
                graph.add_edge(dep, node.id)
    missing = [n for n in graph.nodes if "node" not in graph.nodes[n]]
    if missing:
        raise UserError(f"--target: {missing[0]} is needed but not selected")
    return graph


def _closest(name: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def ordered_nodes(graph: nx.DiGraph) -> list[StageNode]:
    """Topological order, ties broken by model then stage so output order is stable."""
    return [graph.nodes[n]["node"] for n in nx.lexicographical_topological_sort(graph)]


def _context(model: ModelSpec) -> dict[str, Any]:
    prefix = f"{model.prefix}." if model.prefix else ""
    lines = {k[len(prefix) :]: v for k, v in model.lines.items() if k.startswith(prefix) and not k.endswith("#key")}
    data = model.data
    return {
        "manifest": model.display,
        "prefix": model.prefix,
        "lines": lines,
        "folder": str(model.folder),
        "root": str(model.root),
        "source": data["source"],
        "inputs": data["inputs"],
        "outputs": data.get("outputs"),
        "wrapper": data["wrapper"],
        "targets": data["targets"],
        "classes": class_labels(model),
        "description": data["metadata"].get("description", ""),
    }
