"""The package layout is the architecture: lower layers never import higher ones (not even
lazily, inside a function), and only Core ML's own modules import Core ML code.

Layers, bottom up: foundations; data types and the store; libraries around each tool; the
target and runtime registries; stages; manifest loading and the build record; the graph;
report views; releases; the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "modelbuild"

LAYERS = [
    ["modelbuild", "modelbuild.errors", "modelbuild.registry", "modelbuild.versions"],
    [
        "modelbuild.store",
        "modelbuild.checks",
        "modelbuild.manifest.spec",
        "modelbuild.manifest.shapes",
        "modelbuild.manifest.parse",
        "modelbuild.manifest.metadata",
        "modelbuild.manifest.preprocess",
        "modelbuild.graph.node",
    ],
    [
        "modelbuild.usercode",
        "modelbuild.coreml",
        "modelbuild.mil",
        "modelbuild.neuralnetwork",
        "modelbuild.torch_side",
        "modelbuild.quantize",
        "modelbuild.remote",
        "modelbuild.delegation",
        "modelbuild.workers.config",
    ],
    ["modelbuild.targets", "modelbuild.runtimes"],
    ["modelbuild.stages"],
    ["modelbuild.manifest", "modelbuild.report"],
    ["modelbuild.graph"],
    ["modelbuild.cluster", "modelbuild.workers"],
    ["modelbuild.report.bench", "modelbuild.report.sizes", "modelbuild.report.document"],
    ["modelbuild.release"],
    ["modelbuild.cli", "modelbuild.__main__"],
    # Process entry points that run the command line: the warm server and its handed-over builds.
    ["modelbuild.workers.server", "modelbuild.workers.handover"],
]

# Modules allowed to import Core ML code (modelbuild.coreml, modelbuild.mil): its target,
# stages and runtime, and the predict command.
CORE_ML_ROOMS = (
    "modelbuild.coreml",
    "modelbuild.mil",
    "modelbuild.neuralnetwork",
    "modelbuild.targets.coreml",
    "modelbuild.stages.coreml_",
    "modelbuild.runtimes.coreml",
    "modelbuild.cli.commands",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> list[tuple[str, str, int, bool]]:
    """(importer, imported module, line, at module level) for every modelbuild import."""
    edges = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("modelbuild"):
                targets = {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                targets = {a.name for a in node.names if a.name.startswith("modelbuild")}
            else:
                continue
            edges += [(name, target, node.lineno, id(node) in top) for target in targets if target != name]
    return edges


def _layer(module: str) -> int:
    matches = [(len(prefix), index) for index, layer in enumerate(LAYERS) for prefix in layer if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return max(matches)[1]


def test_no_import_runs_back_up_the_layers() -> None:
    upward = [f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)}) at line {line}" for a, b, line, _ in _imports(_modules()) if _layer(b) > _layer(a)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle_at_module_level() -> None:
    graph = nx.DiGraph([(a, b) for a, b, _, top in _imports(_modules()) if top])
    assert list(nx.simple_cycles(graph)) == []


def test_only_core_ml_rooms_import_core_ml_code() -> None:
    outside = [
        f"{a} imports {b} at line {line}"
        for a, b, line, _ in _imports(_modules())
        if b.startswith(("modelbuild.coreml", "modelbuild.mil", "modelbuild.neuralnetwork")) and not a.startswith(CORE_ML_ROOMS)
    ]
    assert not outside, "\n".join(outside)


def test_the_package_root_holds_only_foundations() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "errors.py", "registry.py", "versions.py"]
