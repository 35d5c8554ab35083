"""The fingerprint both weights-only patches rely on: everything about an exported program but
its weights' values, subgraphs (the branches of torch.cond) included."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from modelbuild.torch_side.program_identity import fingerprint  # noqa: E402
from tests.torch_side.test_onnx_constants import Branching  # noqa: E402

EXAMPLE = (torch.ones(2, 4),)


def _fingerprint(scale: float, seed: int) -> str:
    torch.manual_seed(seed)
    return fingerprint(torch.export.export(Branching(scale).eval(), EXAMPLE, strict=False), {"stage": 1})


def test_a_constant_inside_a_branch_changes_the_fingerprint_and_new_weights_do_not() -> None:
    assert _fingerprint(2.0, 0) == _fingerprint(2.0, 1)  # only the weights differ
    assert _fingerprint(2.0, 0) != _fingerprint(3.0, 0)  # the true branch multiplies by another number


def test_a_program_without_subgraphs_is_fingerprinted_as_before() -> None:
    """No "subgraphs" entry unless there are some: records written before keep their
    fingerprint (and their patches)."""
    import hashlib
    import json

    from modelbuild.torch_side import program_identity

    program = torch.export.export(torch.nn.Linear(4, 4).eval(), EXAMPLE, strict=False)
    material = {
        "code": program.graph_module.code,
        "signature": str(program.graph_signature),
        "ranges": sorted(str(item) for item in program.range_constraints.items()),
        "nodes": program_identity._nodes(program.graph),
        "tensors": {name: program_identity._meta(value) for name, value in sorted(program_identity.tensors(program).items())},
        "settings": {"stage": 1},
    }
    assert fingerprint(program, {"stage": 1}) == hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
