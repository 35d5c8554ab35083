"""Filling a translated ONNX graph with new weights: equal to a full export, or refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from modelbuild.torch_side import onnx_constants as constants  # noqa: E402
from tests.torch_side.tiny_model import IDS, Tiny, tiny  # noqa: E402

SETTINGS = {"stage": 1}


def capture(model: torch.nn.Module, example: tuple = (IDS,)) -> object:
    program = constants.capture(model, example, None)
    assert program is not None
    return program


def full_export(program: object, example: tuple = (IDS,)) -> tuple[bytes, object, dict]:
    """What the stage does without a previous graph: translate, learn, fill, optimise (or,
    when learning refuses, optimise the translation as it is)."""
    from modelbuild.stages.onnx_export import strip_debug_metadata

    translated = torch.onnx.export(program, example, dynamo=True, optimize=False, verbose=False, report=False, opset_version=18)
    unoptimized = translated.model_proto
    strip_debug_metadata(unoptimized)
    try:
        structure, record = constants.learn(unoptimized, program, translated.exported_program, SETTINGS)
    except constants.NotPatchable as exc:
        return constants.optimize(unoptimized).SerializeToString(deterministic=True), None, {"format": constants.FORMAT, "refused": str(exc)}
    proto = constants.optimize(constants.filled(structure, program, record))
    return proto.SerializeToString(deterministic=True), structure, record


def previous(tmp_path: Path, model: torch.nn.Module, example: tuple = (IDS,)) -> Path:
    _, structure, record = full_export(capture(model, example), example)
    folder = tmp_path / "previous"
    folder.mkdir()
    constants.write(folder, structure, record)
    return folder


def patched(folder: Path, program: object) -> bytes:
    model, _, _ = constants.patch(folder, program, SETTINGS)
    return constants.optimize(model).SerializeToString(deterministic=True)


def test_new_weights_give_the_bytes_of_a_full_export(tmp_path: Path) -> None:
    folder = previous(tmp_path, tiny(0))
    record = json.loads((folder / constants.RECORD).read_text())
    assert "model.first.weight" not in record and "first.weight" in record["weights"]
    new = tiny(1)
    program = capture(new)
    full, _, _ = full_export(program)
    assert patched(folder, program) == full
    # the stored graph carries no weight: only names, shapes and types
    import onnx

    stored = {init.name: init for init in onnx.load(str(folder / constants.STRUCTURE)).graph.initializer}
    assert set(record["weights"]) <= set(stored)
    assert all(not stored[name].raw_data and list(stored[name].dims) for name in record["weights"])


def test_the_optimizer_output_follows_the_new_weights_where_it_folds_them(tmp_path: Path) -> None:
    """Linear weights reach the file transposed (folded by the optimizer): the patched file
    must hold the new weights' transposes, which only running the optimizer again gives."""
    import onnx
    from onnx import numpy_helper

    folder = previous(tmp_path, tiny(0))
    new = tiny(1)
    model = onnx.load_model_from_string(patched(folder, capture(new)))
    arrays = [numpy_helper.to_array(init) for init in model.graph.initializer]
    assert any(a.shape == (16, 16) and (a == new.first.weight.detach().numpy().T).all() for a in arrays)
    assert not any(a.shape == (16, 16) and (a == tiny(0).first.weight.detach().numpy().T).all() for a in arrays)


def test_weights_that_were_stored_once_and_now_differ_give_a_full_exports_bytes(tmp_path: Path) -> None:
    """Both layer norms start as ones (one initializer after the optimizer); trained apart,
    they are two: the optimizer runs on the filled graph, so the patch splits them as a full
    export does."""
    folder = previous(tmp_path, tiny(0))
    new = tiny(0)
    with torch.no_grad():
        new.norm_b.weight.mul_(1.5)
    program = capture(new)
    full, _, _ = full_export(program)
    assert patched(folder, program) == full


def test_a_changed_graph_is_refused(tmp_path: Path) -> None:
    folder = previous(tmp_path, tiny(0))

    class Other(Tiny):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return super().forward(ids) * 2.0

    torch.manual_seed(0)
    with pytest.raises(constants.NotPatchable, match="structure or settings"):
        constants.patch(folder, capture(Other().eval()), SETTINGS)
    with pytest.raises(constants.NotPatchable, match="structure or settings"):
        constants.patch(folder, capture(tiny(0)), {"stage": 2})


def test_a_tensor_read_only_for_its_size_may_change() -> None:
    """A buffer whose size alone is read is no input of the graph: its value cannot matter."""

    class Scaled(Tiny):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("scale", torch.ones(3))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return super().forward(ids) * self.scale.shape[0]

    torch.manual_seed(0)
    model = Scaled().eval()
    _, _, record = full_export(capture(model))
    assert "scale" not in record["weights"] and "scale" not in record["fixed"]


def test_a_tensor_the_graph_reads_but_no_initializer_holds_must_not_change(tmp_path: Path) -> None:
    """Were a weight read by the graph but stored under no name of its own, its new value
    could not be filled in: the record keeps its digest and a change is refused."""
    from modelbuild.torch_side.program_identity import value_digests

    folder = previous(tmp_path, tiny(0))
    record = json.loads((folder / constants.RECORD).read_text())
    record["weights"].remove("last.bias")
    record["fixed"]["last.bias"] = value_digests(capture(tiny(0)))["last.bias"]
    constants.write(folder, None, record)
    constants.patch(folder, capture(tiny(0)), SETTINGS)  # unchanged: fine
    with pytest.raises(constants.NotPatchable, match="last.bias changed"):
        constants.patch(folder, capture(tiny(1)), SETTINGS)


def test_a_refused_or_broken_record_is_refused(tmp_path: Path) -> None:
    folder = previous(tmp_path, tiny(0))
    program = capture(tiny(1))
    (folder / constants.STRUCTURE).write_bytes(b"\x08\x07\x12")  # not a model
    with pytest.raises(constants.NotPatchable):
        constants.patch(folder, program, SETTINGS)
    constants.write(folder, None, {"format": constants.FORMAT, "refused": "why not"})
    with pytest.raises(constants.NotPatchable, match="why not"):
        constants.patch(folder, program, SETTINGS)
    (folder / constants.RECORD).write_text("{")
    with pytest.raises(constants.NotPatchable, match="no usable previous graph"):
        constants.patch(folder, program, SETTINGS)


def test_a_weight_stored_other_than_byte_for_byte_is_refused_when_learning() -> None:
    from modelbuild.stages.onnx_export import strip_debug_metadata

    program = capture(tiny(0))
    translated = torch.onnx.export(program, (IDS,), dynamo=True, optimize=False, verbose=False, report=False, opset_version=18)
    unoptimized = translated.model_proto
    strip_debug_metadata(unoptimized)
    target = next(init for init in unoptimized.graph.initializer if init.name == "first.weight")
    target.raw_data = bytes(len(target.raw_data))
    with pytest.raises(constants.NotPatchable, match="first.weight"):
        constants.learn(unoptimized, program, translated.exported_program, SETTINGS)


def test_a_copy_of_a_weight_under_another_name_is_refused_when_learning() -> None:
    from onnx import numpy_helper

    from modelbuild.stages.onnx_export import strip_debug_metadata

    program = capture(tiny(0))
    translated = torch.onnx.export(program, (IDS,), dynamo=True, optimize=False, verbose=False, report=False, opset_version=18)
    unoptimized = translated.model_proto
    strip_debug_metadata(unoptimized)
    copy = numpy_helper.from_array(tiny(0).first.weight.detach().numpy(), "stray")
    unoptimized.graph.initializer.append(copy)
    with pytest.raises(constants.NotPatchable, match="stray"):
        constants.learn(unoptimized, program, translated.exported_program, SETTINGS)


class Branching(torch.nn.Module):
    """A constant from the model's configuration inside one branch of torch.cond: the branch
    is a graph of its own, in a submodule of the program."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def scaled(x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) * self.scale

        def shifted(x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) - 1.0

        return torch.cond(x.sum() > 0, scaled, shifted, (x,))


def test_a_change_inside_a_branch_of_cond_is_refused_and_new_weights_alone_are_not(tmp_path: Path) -> None:
    example = (torch.ones(2, 4),)
    torch.manual_seed(0)
    folder = previous(tmp_path, Branching(2.0).eval(), example)
    torch.manual_seed(1)
    with pytest.raises(constants.NotPatchable, match="structure or settings"):  # it used to multiply by the old 2.0
        constants.patch(folder, capture(Branching(3.0).eval(), example), SETTINGS)
    torch.manual_seed(1)
    program = capture(Branching(2.0).eval(), example)
    full, _, _ = full_export(program, example)
    assert patched(folder, program) == full


class Offsets(torch.nn.Module):
    """An int64 buffer added to a tiled input: the translation makes a constant (the tile
    counts) that new offsets can equal."""

    def __init__(self, offsets: list[int]) -> None:
        super().__init__()
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tile(x, (2, 1, 1)) + self.offsets


def test_new_weights_equal_to_a_constant_of_the_graph_are_refused_as_a_full_export_refuses_them(tmp_path: Path) -> None:
    example = (torch.ones(1, 2, 3, dtype=torch.int64),)
    folder = previous(tmp_path, Offsets([5, 5, 5]), example)
    program = capture(Offsets([2, 1, 1]), example)
    _, structure, record = full_export(program, example)
    assert structure is None and "copy of a weight" in record["refused"]
    with pytest.raises(constants.NotPatchable, match="copy of a weight"):  # so the stage writes what a full export writes
        constants.patch(folder, program, SETTINGS)
