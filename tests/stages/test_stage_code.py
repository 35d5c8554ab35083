"""A stage's code cannot change what it writes without its version (and so its key) changing:
the record in stage_code.json must match the code, and the check must see the changes that
matter and ignore the ones that cannot."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest

from tests.stages import stage_code


def test_every_stage_matches_its_recorded_code() -> None:
    found = stage_code.problems(stage_code.current(), stage_code.recorded())
    assert not found, (
        "A stage's code changed. If what it writes can change, bump its `version` (its key, and every cache entry, "
        "changes with it); then record: python -m tests.stages.stage_code --update [--same-output STAGE]\n" + "\n".join(found)
    )


def test_every_stage_a_build_can_run_is_covered() -> None:
    names = set(stage_code.current()["stages"])
    assert {"source", "capture", "coreml.convert", "onnx.export", "executorch.export", "coreml.verify", "onnx.bench", "torch.bench"} <= names
    # a verify stage depends on the runtime that runs the artifact, an export on its torch side
    assert "modelbuild.runtimes.onnxruntime" in stage_code.current()["stages"]["onnx.verify"]["modules"]
    assert "modelbuild.torch_side.onnx_constants" in stage_code.current()["stages"]["onnx.export"]["modules"]
    # modules a registry loads by name count: the compat conversions shape a Core ML conversion
    assert "modelbuild.coreml.compat.transformers_ops" in stage_code.current()["stages"]["coreml.convert"]["modules"]


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_docstrings_comments_and_formatting_do_not_count_but_code_does(tmp_path: Path) -> None:
    base = _write(tmp_path / "a.py", '"""Module."""\n\ndef f(x):\n    """Doc."""\n    return x + 1\n')
    same = _write(tmp_path / "b.py", '"""Other words."""\n# a comment\ndef f(x):\n    """Other doc."""\n    return (x +\n            1)  # why\n')
    other = _write(tmp_path / "c.py", '"""Module."""\n\ndef f(x):\n    """Doc."""\n    return x + 2\n')
    assert stage_code.code_digest(base) == stage_code.code_digest(same)
    assert stage_code.code_digest(base) != stage_code.code_digest(other)


def test_imports_inside_functions_and_from_imports_are_followed(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "m.py",
        """
        from modelbuild.stages.base import Stage
        from modelbuild.torch_side import onnx_constants


        def later():
            import modelbuild.quantize.pt2e
            from modelbuild.store.hashing import digest_json
            import json
        """,
    )
    direct, parents = stage_code.imported(path)
    assert direct == {"modelbuild.stages.base", "modelbuild.torch_side.onnx_constants", "modelbuild.quantize.pt2e", "modelbuild.store.hashing"}
    assert parents == {"modelbuild", "modelbuild.stages", "modelbuild.torch_side", "modelbuild.quantize", "modelbuild.store"}  # run first
    assert stage_code.imported(path, in_functions=False)[0] == {"modelbuild.stages.base", "modelbuild.torch_side.onnx_constants"}


def test_a_package_that_is_only_a_parent_brings_what_it_imports_when_it_runs_not_its_lazy_imports() -> None:
    modules = stage_code.closure({"modelbuild.stages.onnx_package"})
    assert "modelbuild.stages" in modules and "modelbuild.stages.base" in modules
    assert "modelbuild.stages.checks" not in modules  # imported inside modelbuild.stages._derive only
    assert "modelbuild.torch_side.prepare" not in modules


def test_changed_code_under_the_same_version_is_refused_and_named() -> None:
    then = stage_code.current()
    now = copy.deepcopy(then)
    now["modules"]["modelbuild.torch_side.prepare"] = "0" * 64
    found = stage_code.problems(now, then)
    assert any(line.startswith("capture: code it depends on changed (modelbuild.torch_side.prepare)") for line in found), found
    assert not any(line.startswith("onnx.package:") for line in found)  # not a module it can run
    now["stages"]["capture"]["version"] += 1  # bumped: what is left is recording it
    found = stage_code.problems(now, then)
    assert any(line.startswith("capture: version") and "not recorded yet" in line for line in found), found
    assert not any("capture: code it depends on changed" in line for line in found)


def test_update_refuses_changed_code_under_the_same_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "stage_code.json"
    monkeypatch.setattr(stage_code, "RECORD", record)
    assert stage_code.update([]) == [] and record.exists()
    then = stage_code.recorded()
    then["modules"]["modelbuild.stages.onnx_package"] = "f" * 64
    record.write_text(__import__("json").dumps(then))
    before = record.read_text()
    assert stage_code.update([]) == ["onnx.package"]
    assert record.read_text() == before  # nothing recorded
    assert stage_code.update(["onnx.pack*"]) == []
    assert stage_code.problems(stage_code.current(), stage_code.recorded()) == []
