from __future__ import annotations

import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from modelbuild.torch_side.zipnorm import normalize_torch_zip  # noqa: E402


def test_torchscript_saves_become_byte_identical_and_still_load(tmp_path: Path) -> None:
    module = torch.jit.trace(torch.nn.Linear(3, 2).eval(), torch.ones(1, 3))
    torch.jit.save(module, str(tmp_path / "a.pt"))
    time.sleep(0.01)
    torch.jit.save(module, str(tmp_path / "b.pt"))
    assert (tmp_path / "a.pt").read_bytes() != (tmp_path / "b.pt").read_bytes()  # torch's random id
    assert normalize_torch_zip(tmp_path / "a.pt") and normalize_torch_zip(tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    loaded = torch.jit.load(str(tmp_path / "a.pt"))
    assert torch.equal(loaded(torch.ones(1, 3)), module(torch.ones(1, 3)))
