"""The proof the weights-only patch of ``onnx.export`` needs: for every example, new weights
give, by filling the previous translated graph, the very bytes a full export gives."""

from __future__ import annotations

from pathlib import Path

from tests.stages.test_executorch_patch import cache_entry, patched_then_full

# Examples whose graph is filled with the new weights. The quantised variant exports in full
# (its scales come from calibration), and the test checks that it keeps no record.
PATCHED = {"classifier", "generator", "gpt", "imageclassifier", "lstm", "mobilenet", "rmsnorm", "textclassifier", "segmenter", "onnxsegmenter"}
QUANTISED = {"mobilenet-int8"}
UNCHANGED = {"smooth"}  # its weights are made by its code, not read from a file: nothing to rebuild


def test_new_weights_patch_every_example_to_the_bytes_of_a_full_export(built_examples: Path, tmp_path: Path) -> None:
    root, patched, full = patched_then_full(built_examples, tmp_path, "onnx", "onnx.export")
    assert set(patched) == set(full)
    for model, entry in patched.items():
        assert entry["status"] == ("cached" if model in UNCHANGED else "built"), (model, entry)
        assert entry["output"] == full[model]["output"], f"{model}: patched output differs from a full export"
        assert entry.get("notes") == full[model].get("notes"), model
        assert bool(entry["info"].get("constants_patched")) == (model in PATCHED), (model, entry["info"])
    assert set(full) == PATCHED | QUANTISED | UNCHANGED
    for model in QUANTISED:
        assert not (cache_entry(root, full[model]["output"]) / "constants.json").exists(), model


def test_a_record_that_cannot_be_made_leaves_the_export_as_it_is(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A bug in the record must cost the next rebuild its patch, never this export its exporter
    (the stage's outer handler would otherwise fall back to the TorchScript-based one)."""
    import logging
    import types

    import pytest

    torch = pytest.importorskip("torch")
    from modelbuild.stages import onnx_export
    from modelbuild.torch_side import onnx_constants
    from tests.torch_side.tiny_model import IDS, tiny

    program = onnx_constants.capture(tiny(0), (IDS,), None)
    translated = torch.onnx.export(program, (IDS,), dynamo=True, optimize=False, verbose=False, report=False, opset_version=18)
    expected = onnx_constants.optimize(translated.model_proto)

    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(onnx_constants, "learn", broken)
    job = types.SimpleNamespace(log=logging.getLogger("test"))
    proto, structure, record = onnx_export._optimized(job, translated, program, {"stage": 1})  # type: ignore[arg-type]
    assert structure is None and "recording the translated graph failed" in record["refused"]
    assert proto.graph.node and len(proto.graph.initializer) == len(expected.graph.initializer)
