"""report.json: the build report with its size and benchmark tables, for tools and CI.

Kept apart from ``report.results`` so that the tables (which read results) and the record
they read never import each other.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from modelbuild import __version__
from modelbuild.report.bench import bench_rows
from modelbuild.report.results import BuildReport
from modelbuild.report.sizes import size_rows


def to_json(report: BuildReport) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for r in report.results:
        # Field by field, not asdict(): that deep-copies every stage's info (5 ms a build, which
        # is a tenth of a metadata-only rebuild); a dataclass nested in it is made plain by
        # write_report's encoder instead.
        values = ((f.name, getattr(r, f.name)) for f in fields(r) if f.name not in ("model", "stage", "traceback"))
        entry = {k: v for k, v in values if v not in (None, [], {})}
        entry["seconds"] = round(r.seconds, 3)
        entry["reason"] = r.reason
        if r.reasons:
            entry["reasons"] = [reason.to_json() for reason in r.reasons]
        models.setdefault(r.model, {"stages": {}})["stages"][r.stage] = entry
    counts: dict[str, int] = {}
    for r in report.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {
        "modelbuild": __version__,
        "seconds": round(report.seconds, 3),
        "exit_code": report.exit_code,
        "counts": counts,
        "warnings": report.warnings,
        "models": models,
        "sizes": size_rows(report),
        "bench": bench_rows(report),
        "variant_of": report.variant_of,
        **({"remote": report.remote} if report.remote is not None else {}),
    }


def write_report(report: BuildReport, path: Path) -> None:
    """Replace ``path`` atomically, never writing through a link planted there."""
    from modelbuild.store.paths import replace_file

    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, report_text(report))


def report_text(report: BuildReport) -> str:
    """report.json's text."""
    return json.dumps(to_json(report), indent=2, sort_keys=True, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    """A dataclass inside a stage's info, as asdict() would have written it."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
