"""docs/mil-ops.md is the truth: it lists exactly the implemented ops, and every op the
example manifests produce is in it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from modelbuild.mil.program import load_program, program_ops
from modelbuild.mil.registry import supported_ops
from tests.conftest import REPO

HANDLED_WITHOUT_IMPLEMENTATION = {"const"}


def documented_ops() -> set[str]:
    rows = [line for line in (REPO / "docs" / "mil-ops.md").read_text().splitlines() if line.startswith("| ") and "`" in line]
    return {op for row in rows for op in re.findall(r"`([a-z0-9_]+)`", row)}


def test_the_table_lists_exactly_the_implemented_ops() -> None:
    assert documented_ops() == set(supported_ops())


def test_every_op_of_the_example_packages_is_supported(built_examples: Path) -> None:
    table = documented_ops() | HANDLED_WITHOUT_IMPLEMENTATION
    report = json.loads((built_examples / "build" / "report.json").read_text())
    packages = sorted(
        built_examples / "build" / model / f"{model}.mlpackage" for model, entry in report["models"].items() if "coreml.package" in entry["stages"]
    )
    checked, networks = [], []
    for package in packages:
        try:
            program, _spec = load_program(package)
        except ValueError:  # a neuralnetwork package (the generator): the other executor's
            networks.append(package)
            continue
        ops = {op for op in program_ops(program) if not op.startswith("constexpr_")}
        assert ops <= table, f"{package.name} uses {sorted(ops - table)}, missing from docs/mil-ops.md"
        checked.append(package.parent.name)
    from modelbuild.neuralnetwork.registry import supported_layers
    from modelbuild.neuralnetwork.runner import NetworkRunner

    for package in networks:
        kinds = {layer.WhichOneof("layer") for layer in NetworkRunner(package).network.layers}
        assert kinds <= set(supported_layers()), f"{package.name} uses {sorted(kinds - set(supported_layers()))}"
    # Every package the examples build: ML programs against docs/mil-ops.md, neural networks
    # (the generator) against the layer table.
    assert checked and networks and len(checked) + len(networks) == len(packages)
