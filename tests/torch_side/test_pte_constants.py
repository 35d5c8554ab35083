"""Patching an ExecuTorch program's constants: equal to a full conversion, or refused."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch")

from modelbuild.torch_side import program_identity as identity  # noqa: E402
from modelbuild.torch_side import pte_constants as constants  # noqa: E402
from tests.torch_side.tiny_model import IDS, Tiny, tiny  # noqa: E402

SETTINGS = {"stage": 1}


def export(model: torch.nn.Module) -> object:
    return torch.export.export(model, (IDS,), strict=False)


def lower(program: object) -> tuple[bytes, dict]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    before = constants.describe(program, SETTINGS)
    with constants.recording() as recorder:
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    lowered = edge.to_executorch()
    return lowered.buffer, constants.learn(program, before, recorder, lowered.buffer, lowered.exported_program())


def previous(tmp_path: Path, model: torch.nn.Module) -> Path:
    data, record = lower(export(model))
    constants.write_record(tmp_path, record)
    (tmp_path / "m.pte").write_bytes(data)
    return tmp_path


def retrained(model: Tiny) -> Tiny:
    """New weights as training gives them, with the layer norms still equal to each other."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.mul_(1.5)
            if not name.startswith("norm_"):
                param.add_(0.01)
    return model


def run(tmp_path: Path, data: bytes) -> torch.Tensor:
    from executorch.runtime import Runtime

    path = tmp_path / "run.pte"
    path.write_bytes(data)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    return method.execute([IDS])[0]


def test_a_patched_program_is_the_full_conversion_byte_for_byte_and_runs(tmp_path: Path) -> None:
    folder = previous(tmp_path, tiny())
    record = constants.json.loads((folder / constants.RECORD).read_text())
    assert len(record["named"]) >= 3 and record["constants"], record  # delegated and program constants both patched
    assert any(entry["sources"] == [[constants.LITERAL, None]] for entry in record["constants"])  # the lifted 4.0

    new_model = retrained(tiny())
    program = export(new_model)
    patched, patched_record = constants.patch(folder, "m.pte", program, SETTINGS)
    full, full_record = lower(export(new_model))
    assert patched == full
    assert patched_record == full_record
    with torch.no_grad():
        torch.testing.assert_close(run(tmp_path, patched), new_model(IDS), atol=1e-5, rtol=1e-5)


def test_weights_that_were_stored_once_and_now_differ_are_refused(tmp_path: Path) -> None:
    folder = previous(tmp_path, tiny())
    model = tiny()
    with torch.no_grad():
        model.norm_b.weight.add_(0.5)  # the two layer norms were equal: one stored buffer
    with pytest.raises(constants.NotPatchable, match="were equal"):
        constants.patch(folder, "m.pte", export(model), SETTINGS)


def test_weights_that_become_equal_are_refused(tmp_path: Path) -> None:
    folder = previous(tmp_path, tiny())
    model = tiny()
    with torch.no_grad():
        model.norm_a.weight.zero_()
        model.norm_b.weight.zero_()  # still equal to each other, and now to the biases (zeros): stored once in a full conversion
    with pytest.raises(constants.NotPatchable, match="now equal"):
        constants.patch(folder, "m.pte", export(model), SETTINGS)


def test_another_graph_or_other_settings_are_refused(tmp_path: Path) -> None:
    folder = previous(tmp_path, tiny())

    class Other(Tiny):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return super().forward(ids) * 2.0

    with pytest.raises(constants.NotPatchable, match="structure or settings"):
        constants.patch(folder, "m.pte", export(Other().eval()), SETTINGS)
    with pytest.raises(constants.NotPatchable, match="structure or settings"):
        constants.patch(folder, "m.pte", export(tiny()), {"stage": 2})


def test_a_constant_xnnpack_computes_from_weights_makes_the_program_unpatchable() -> None:
    class ConvNorm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.norm = torch.nn.BatchNorm2d(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(self.conv(x))

    model = ConvNorm().eval()
    with torch.no_grad():
        model.norm.running_var.fill_(2.0)
    program = torch.export.export(model, (torch.randn(1, 3, 8, 8),), strict=False)
    with pytest.raises(constants.NotPatchable):
        lower(program)


def test_a_previous_output_without_a_usable_record_is_refused(tmp_path: Path) -> None:
    folder = previous(tmp_path, tiny())
    (folder / constants.RECORD).write_text('{"format": 1, "refused": "x"}')
    with pytest.raises(constants.NotPatchable):
        constants.patch(folder, "m.pte", export(tiny()), SETTINGS)
    (folder / constants.RECORD).unlink()
    with pytest.raises(constants.NotPatchable, match="no usable previous program"):
        constants.patch(folder, "m.pte", export(tiny()), SETTINGS)


def test_the_fingerprint_keeps_source_lines_but_not_the_checkouts_folder() -> None:
    # The record is part of the stage's output, which modelbuild.lock pins across checkouts.
    here = '  File "/home/a/proj/models/gpt.py", line 43, in forward\n    x = 1\n'
    there = '  File "/tmp/ci/models/gpt.py", line 43, in forward\n    x = 1\n'
    moved = '  File "/tmp/ci/models/gpt.py", line 44, in forward\n    x = 1\n'
    assert identity._frames(here) == identity._frames(there) == ["gpt.py:43:forward"]
    assert identity._frames(moved) != identity._frames(here)
    # fx-generated code (an ONNX source's modules) is numbered by a per-process counter.
    one, other = ('  File "<eval_with_key>.%d", line 5, in forward\n' % n for n in (11, 17))
    assert identity._frames(one) == identity._frames(other) == ["<eval_with_key>:5:forward"]


def test_a_recording_hears_only_its_own_threads_lowering() -> None:
    # A Dask worker with several threads may lower two programs at once: a record must never
    # take another program's constants for its own.
    import threading

    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = export(tiny())
    with constants.recording() as recorder:
        other = threading.Thread(target=lambda: to_edge_transform_and_lower(export(tiny(1)), partitioner=[XnnpackPartitioner()]))
        other.start()
        other.join()
        assert recorder.calls == []
        to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    assert recorder.calls and all(source is not None for _, source in recorder.calls)
