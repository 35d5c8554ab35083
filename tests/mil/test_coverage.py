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
    skipped = {model for model, entry in report["models"].items() if entry["stages"].get("coreml.verify", {}).get("status") == "skipped"}
    checked = []
    for package in packages:
        try:
            program, _spec = load_program(package)
        except ValueError:  # a neuralnetwork package (the generator): not an ML program
            assert package.parent.name in skipped  # and so its verification says it was skipped
            continue
        ops = {op for op in program_ops(program) if not op.startswith("constexpr_")}
        assert ops <= table, f"{package.name} uses {sorted(ops - table)}, missing from docs/mil-ops.md"
        checked.append(package.parent.name)
    # Every ML-program package the examples build, whichever they are (constexpr ops
    # decompress in the loader); only neuralnetwork packages are left out.
    assert checked and len(checked) == len(packages) - len(skipped & {p.parent.name for p in packages})
