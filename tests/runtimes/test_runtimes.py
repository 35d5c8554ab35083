"""Runtimes on their own: every target names a registered runtime, the planning-time questions
stay cheap, and each runtime returns the artifact's outputs as numpy arrays in order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelbuild.runtimes import RUNTIMES
from modelbuild.targets import TARGETS


def test_every_target_names_a_registered_runtime() -> None:
    for name in TARGETS.names():
        assert TARGETS.get(name).runtime in RUNTIMES, name


def test_asking_whether_a_runtime_can_run_imports_no_heavy_library() -> None:
    # Planning asks every runtime on every build, the no-op one included.
    code = (
        "import sys; from modelbuild.runtimes import RUNTIMES\n"
        "for name in RUNTIMES.names():\n"
        "    cls = RUNTIMES.get(name); cls.unavailable({'format': 'mlprogram', 'backend': 'xnnpack'}, 'verify'); cls.key_params({})\n"
        "heavy = [m for m in ('torch', 'coremltools', 'onnxruntime', 'executorch') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_torchscript_runs_a_saved_module_and_returns_outputs_in_order(tmp_path: Path) -> None:
    import torch

    class TwoOutputs(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x * 2, x.sum(dim=1)

    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.trace(TwoOutputs(), torch.ones(1, 3)), str(path))
    runtime = RUNTIMES.get("torchscript")(path, {}, threads=1)
    x = np.arange(3, dtype=np.float32).reshape(1, 3)
    doubled, total = runtime.run([x], {})
    np.testing.assert_array_equal(doubled, x * 2)
    np.testing.assert_array_equal(total, [3.0])
    assert runtime.prepare_call([x], {})() is not None


def test_onnxruntime_feeds_inputs_by_the_graph_names(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Sub", ["a", "b"], ["d"])],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1, 2])],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    runtime = RUNTIMES.get("onnxruntime")(path, {}, threads=1)
    [d] = runtime.run([np.array([[5, 7]], np.float32), np.array([[1, 2]], np.float32)], {})
    np.testing.assert_array_equal(d, [[4, 5]])  # a, b in input order: Sub is not commutative


def test_onnxruntime_sessions_stop_spinning_when_a_run_returns(tmp_path: Path) -> None:
    """The benchmark alternates runtimes in one process; a pool spinning after its run starved
    torch's next one (an adversarial run read a 13x speedup that was not there)."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    path = tmp_path / "m.onnx"
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    path.write_bytes(onnx_model.SerializeToString())
    runtime = RUNTIMES.get("onnxruntime")(path, {}, threads=2)
    options = runtime.session.get_session_options()
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert options.intra_op_num_threads == 2


def test_runtimes_say_why_they_cannot_run_here(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys, "platform", "linux")
    coreml = RUNTIMES.get("coreml")
    assert coreml.unavailable({"format": "mlprogram"}, "verify") is None  # the Linux executor runs ML programs
    assert coreml.unavailable({"format": "neuralnetwork"}, "verify") is None  # ... and so does the neuralnetwork executor
    assert "timing needs macOS" in coreml.unavailable({"format": "mlprogram"}, "bench")
    assert "runs on macOS only" in RUNTIMES.get("executorch").unavailable({"backend": "coreml"})
    assert RUNTIMES.get("executorch").unavailable({"backend": "xnnpack"}) is None
    assert RUNTIMES.get("onnxruntime").unavailable({}) is None
