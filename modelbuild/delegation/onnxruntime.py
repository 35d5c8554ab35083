"""The ONNX Runtime view: what its graph optimizer made of the model at the level the
benchmarks use (new fused operator kinds, operators it removed), and which execution provider
each node ran on in one profiled inference, so a node that falls back from the chosen
provider is named."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from modelbuild.delegation.report import Delegation, LeftOut


def onnxruntime_delegation(artifact: Path, feeds: dict[str, Any], provider: str = "CPUExecutionProvider") -> Delegation:
    import onnx
    import onnxruntime as ort

    original = Counter(node.op_type for node in onnx.load(str(artifact), load_external_data=False).graph.node)
    with tempfile.TemporaryDirectory(prefix="modelbuild-ort-") as scratch:
        settings = ort.SessionOptions()
        settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        settings.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        settings.enable_profiling = True
        settings.profile_file_prefix = str(Path(scratch) / "profile")
        settings.intra_op_num_threads = 1
        settings.log_severity_level = 3
        session = ort.InferenceSession(str(artifact), sess_options=settings, providers=[provider])
        session.run(None, feeds)
        profile = Path(session.end_profiling())
        optimized = Counter(node.op_type for node in onnx.load(settings.optimized_model_filepath, load_external_data=False).graph.node)
        events = json.loads(profile.read_text())
    report = Delegation("onnxruntime", f"{provider} (ORT_ENABLE_ALL)")
    report.fused = {op: count for op, count in sorted(optimized.items()) if op not in original}
    removed = {op: original[op] - optimized.get(op, 0) for op in original if original[op] > optimized.get(op, 0)}
    if removed:
        report.notes.append("folded or fused away: " + ", ".join(f"{op} ×{n}" for op, n in sorted(removed.items())))
    placed: Counter[str] = Counter()
    away: Counter[str] = Counter()
    for event in events:
        args = event.get("args") or {}
        if event.get("cat") != "Node" or "provider" not in args or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        placed[args["provider"]] += 1
        if args["provider"] != provider:
            away[args.get("op_name", "?")] += 1
    report.ops_total = sum(placed.values())
    report.ops_delegated = placed.get(provider, 0)
    report.partitions = 1 if report.ops_delegated else 0
    report.left_out = [LeftOut(op, count) for op, count in away.most_common()]
    return report
