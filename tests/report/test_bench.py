"""bench.md and the bench rows: several thread counts, the float comparison per count, and
where each artifact runs."""

from __future__ import annotations

from modelbuild.delegation.report import Delegation, LeftOut
from modelbuild.report import BuildReport, StageResult, Status
from modelbuild.report.bench import bench_rows, delegation_lines, to_markdown
from modelbuild.stages.checks import thread_counts


def _row(backend: str, threads: int, mean: float, torch_mean: float) -> dict:
    stats = {"mean_ms": mean, "std_ms": 0.1, "p50_ms": mean, "p90_ms": mean, "min_ms": mean, "runs": 10}
    return {"backend": backend, "shape": "default", "threads": threads, **stats, "torch_mean_ms": torch_mean, "speedup": torch_mean / mean, "stopped": "stable"}


def test_thread_counts_take_a_list_and_cores() -> None:
    import os

    assert thread_counts(1) == [1]
    assert thread_counts([1, "cores"]) == list(dict.fromkeys([1, os.cpu_count() or 1]))
    assert thread_counts(["cores", "cores"]) == [os.cpu_count() or 1]


def test_each_thread_count_is_its_own_row_and_its_own_float_comparison() -> None:
    float_bench = StageResult("net", "executorch.bench", Status.BUILT, info={"bench": [_row("executorch", 1, 10.0, 20.0), _row("executorch", 2, 6.0, 12.0)]})
    int8_bench = StageResult("net-int8", "executorch.bench", Status.BUILT, info={"bench": [_row("executorch", 1, 5.0, 20.0), _row("executorch", 2, 6.0, 12.0)]})
    report = BuildReport([float_bench, int8_bench], variant_of={"net-int8": "net"})
    rows = {(r["model"], r["threads"]): r for r in bench_rows(report)}
    assert rows[("net-int8", 1)]["vs_float"] == 2.0  # 4.0 vs 2.0 "vs torch" at one thread
    assert rows[("net-int8", 2)]["vs_float"] == 1.0  # no gain with two threads: said, not hidden
    page = to_markdown(report)
    assert "| threads |" in page and "| net-int8 | executorch | default | 2 |" in page


def test_one_thread_count_keeps_the_table_as_it_was() -> None:
    report = BuildReport([StageResult("net", "executorch.bench", Status.BUILT, info={"bench": [_row("executorch", 1, 10.0, 20.0)]})])
    assert "| threads |" not in to_markdown(report)


def test_delegation_reports_are_listed_per_model_and_target() -> None:
    executorch = Delegation("executorch", "xnnpack", 10, 5, 100.0, 90.0, 3, [LeftOut("aten.abs", 4, ["net.0 (ReflectionPad2d), models/g.py:12"])])
    onnx = Delegation("onnxruntime", "CPUExecutionProvider (ORT_ENABLE_ALL)", 7, 7, partitions=1, fused={"FusedConv": 3})
    report = BuildReport(
        [
            StageResult("net", "executorch.export", Status.BUILT, info={"delegation": executorch.to_json()}),
            StageResult("net", "onnx.verify", Status.CACHED, info={"delegation": onnx.to_json()}),
            StageResult("other", "executorch.export", Status.FAILED, info={"delegation": executorch.to_json()}),
        ]
    )
    lines = delegation_lines(report)
    assert [(m, t) for m, t, _ in lines] == [("net", "executorch"), ("net", "onnx")]
    assert "50% of operators (90% of estimated FLOPs) run in xnnpack, in 3 partitions" in lines[0][2]
    assert "aten.abs ×4 (net.0 (ReflectionPad2d), models/g.py:12)" in lines[0][2]
    assert "the optimizer made FusedConv ×3" in lines[1][2]
    assert "## Where each artifact runs" in to_markdown(report)


def test_a_variant_that_is_not_faster_says_so() -> None:
    from modelbuild.report.bench import variant_verdicts

    float_bench = StageResult("net", "onnx.bench", Status.BUILT, info={"bench": [_row("onnx", 1, 10.0, 20.0)]})
    slow = StageResult("net-int8", "onnx.bench", Status.BUILT, info={"bench": [_row("onnx", 1, 10.2, 20.0)]})
    lines = variant_verdicts(bench_rows(BuildReport([float_bench, slow], variant_of={"net-int8": "net"})))
    assert len(lines) == 1 and "net-int8 · onnx · default: no faster than its float version (0.98×)" in lines[0] and "saves size, not time" in lines[0]
    fast = StageResult("net-int8", "onnx.bench", Status.BUILT, info={"bench": [_row("onnx", 1, 6.0, 20.0)]})
    report = BuildReport([float_bench, fast], variant_of={"net-int8": "net"})
    assert variant_verdicts(bench_rows(report)) == ["net-int8 · onnx · default: 1.67× its float version"]
    assert "Variants against their float versions:" in to_markdown(report)
