"""The ExecuTorch runtime: what verification reads and what a benchmark times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("executorch")

import torch  # noqa: E402

from modelbuild.runtimes.executorch import ExecuTorchRuntime  # noqa: E402


def _program(tmp_path: Path) -> Path:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    edge = to_edge_transform_and_lower(torch.export.export(model, (torch.rand(1, 3, 8, 8),), strict=False), partitioner=[XnnpackPartitioner()])
    path = tmp_path / "model.pte"
    path.write_bytes(edge.to_executorch().buffer)
    return path


def test_a_timed_call_leaves_outputs_where_the_program_wrote_them_and_run_hands_out_copies(tmp_path: Path) -> None:
    """The benchmark's call must not time the binding's output copy (an app never pays it);
    ``run``, which verification keeps results of, must copy, or the next call overwrites them."""
    runtime = ExecuTorchRuntime(_program(tmp_path), {}, threads=1)
    feeds = [np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)]
    call = runtime.prepare_call(feeds, {})
    first, second = call()[0], call()[0]
    assert first.data_ptr() == second.data_ptr()  # the program's own output memory, not a fresh copy per call
    kept = runtime.run(feeds, {})[0]
    np.testing.assert_array_equal(second.numpy(), kept)
    runtime.run([np.zeros_like(feeds[0])], {})
    np.testing.assert_array_equal(runtime.run(feeds, {})[0], kept)
    assert kept.any() and not np.shares_memory(kept, second.numpy())
