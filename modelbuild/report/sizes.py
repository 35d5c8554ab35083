"""Sizes of compressed and quantised artifacts next to their float versions, with the error
their verification measured against the PyTorch reference: the trade a user is making."""

from __future__ import annotations

from typing import Any

from modelbuild.report.results import SETTLED, BuildReport
from modelbuild.targets import TARGETS


def size_rows(report: BuildReport) -> list[dict[str, Any]]:
    """One row per artifact that has a float version to compare with: a Core ML package with
    ``optimize`` steps (its raw conversion), or any artifact of a variant (its base model's)."""
    results = {(r.model, r.stage): r for r in report.results}
    target_of = {TARGETS.get(t).artifact_stage(): t for t in TARGETS.names()}
    rows = []
    for (model, stage), result in results.items():
        target = target_of.get(stage)
        if target is None or result.status not in SETTLED or not result.size:
            continue
        # A stage of the target that compressed its artifact records the size it started from.
        compressing = [r for s in TARGETS.get(target).stages if (r := results.get((model, s))) is not None and r.info.get("size_before")]
        base = report.variant_of.get(model)
        if compressing:
            float_size, float_from = compressing[0].info["size_before"], f"before {compressing[0].stage.split('.', 1)[1]}"
        elif base and (base, stage) in results and results[(base, stage)].size:
            float_size, float_from = results[(base, stage)].size, base
        else:
            continue
        verify = results.get((model, f"{target}.verify"))
        settled = verify if verify is not None and verify.status in SETTLED else None
        figures = settled.info.get("outputs", []) if settled else []
        rows.append(
            {
                "model": model,
                "target": target,
                "size": result.size,
                "float_size": float_size,
                "float_from": float_from,
                "ratio": result.size / float_size,
                "max_abs": max((f["max_abs"] for f in figures), default=None),
                "cosine": min((f["cosine"] for f in figures), default=None),
                "verdict": settled.info.get("verdict") if settled else (verify.status if verify else None),
            }
        )
    return sorted(rows, key=lambda r: (r["model"], r["target"]))
