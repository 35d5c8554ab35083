"""Benchmark figures out of a build report: rows for the terminal table and a Markdown page
(``build/bench.md``) a person can paste into a pull request."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from modelbuild.report.results import SETTLED, BuildReport, Status, role_of


def bench_rows(report: BuildReport) -> list[dict[str, Any]]:
    rows = []
    for result in report.results:
        if role_of(result.stage) == "measure" and result.status in SETTLED:
            rows += [{"model": result.model, **row} for row in result.info.get("bench", [])]
    _compare_with_float(rows, report.variant_of)
    order = {"torch": 0}
    return sorted(rows, key=lambda r: (r["model"], r["shape"], r.get("threads", 1), order.get(r["backend"], 1), r["backend"]))


def several_thread_counts(rows: list[dict[str, Any]]) -> bool:
    """Whether the tables need a threads column (benchmark.threads was a list somewhere)."""
    return len({r.get("threads", 1) for r in rows}) > 1


def _compare_with_float(rows: list[dict[str, Any]], variant_of: dict[str, str]) -> None:
    """A variant's speed-up over its float version: the ratio of the two runs' "vs torch"
    figures. Each is measured against torch eager in its own run, so a machine that got
    slower between the two runs does not show up as a speed-up."""
    index = {(r["model"], r["backend"], r["shape"], r.get("threads", 1)): r for r in rows}
    for row in rows:
        base = index.get((variant_of.get(row["model"], ""), row["backend"], row["shape"], row.get("threads", 1)))
        if base is not None and row["backend"] != "torch":
            row["vs_float"] = row["speedup"] / base["speedup"]


GAIN = 1.05  # a variant less than 5% faster than its float version gains nothing worth its error


def variant_verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """What each variant buys on each runtime, in words: faster, or smaller only. A quantised
    artifact that is not faster is said to be so, never left to look like a win."""
    lines = []
    for row in rows:
        gain = row.get("vs_float")
        if gain is None:
            continue
        where = f"{row['model']} · {row['backend']} · {row['shape']}" + (f" · {row['threads']} thread(s)" if row.get("threads", 1) != 1 else "")
        if gain >= GAIN:
            lines.append(f"{where}: {gain:.2f}× its float version")
        else:
            lines.append(f"{where}: no faster than its float version ({gain:.2f}×){_why_no_gain(row['backend'])}; it saves size, not time")
    return lines


def _why_no_gain(backend: str) -> str:
    """The measured reason int8 gives little on an x86 CPU without int8 dot products."""
    if backend not in ("executorch", "onnx") or platform.machine() not in ("x86_64", "AMD64"):
        return ""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return ""
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return ""
    return " on this CPU, which has no int8 dot-product instructions (AVX-VNNI)"


def skipped_backends(report: BuildReport) -> list[tuple[str, str, str]]:
    return [
        (r.model, r.stage.rsplit(".", 1)[0], r.reason)
        for r in report.results
        if role_of(r.stage) == "measure" and r.status in (Status.SKIPPED, Status.FAILED, Status.BLOCKED)
    ]


def machine() -> str:
    from modelbuild.runtimes import RUNTIMES
    from modelbuild.stages.base import tool_version

    # The runtimes' own distributions: what ran the timed code.
    runtimes = sorted({d for name in RUNTIMES.names() for d in RUNTIMES.get(name).distributions} - {"modelbuild"})
    versions = [f"{dist} {tool_version(dist)}" for dist in runtimes if tool_version(dist) != "not installed"]
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; {', '.join(versions)}"


def to_markdown(report: BuildReport) -> str:
    rows = bench_rows(report)
    threads = sorted({r["threads"] for r in rows})
    many = several_thread_counts(rows)
    lines = [
        "# modelbuild bench",
        "",
        f"{machine()}. Threads per backend: {', '.join(map(str, threads)) or '-'}. Each backend is timed in turns with torch "
        'eager in one process; "vs torch" is the eager mean over the backend mean from that same run. With runs: auto, '
        'a figure runs until its mean is known to 1%; "(budget)" marks one whose time budget ran out first.',
        "",
        f"| model | backend | shape |{' threads |' if many else ''} mean ± std (ms) | p50 | p90 | min | runs | size "
        "| torch, same run (ms) | vs torch | vs float |",
        f"|---|---|---|{'---:|' if many else ''}---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        size = f"{r['size'] / 1024:.1f} KB" if r.get("size") else ""
        threads_column = f" {r.get('threads', 1)} |" if many else ""
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['shape']} |{threads_column}"
            f" {r['mean_ms']:.3f} ± {r['std_ms']:.3f} | {r['p50_ms']:.3f} | "
            f"{r['p90_ms']:.3f} | {r['min_ms']:.3f} | {runs_text(r)} | {size} | {r['torch_mean_ms']:.3f} | {r['speedup']:.2f}× | "
            f"{times(r.get('vs_float'))} |"
        )
    skipped = skipped_backends(report)
    if skipped:
        lines += ["", "Not benchmarked here:", ""] + [f"- {m} · {b}: {why}" for m, b, why in skipped]
    verdicts = variant_verdicts(rows)
    if verdicts:
        lines += ["", "Variants against their float versions:", ""] + [f"- {line}" for line in verdicts]
    delegation = delegation_lines(report)
    if delegation:
        lines += ["", "## Where each artifact runs", ""] + [f"- {m} · {target}: {text}" for m, target, text in delegation]
    return "\n".join(lines) + "\n"


def delegation_lines(report: BuildReport) -> list[tuple[str, str, str]]:
    """(model, target, sentence) of every delegation report the build holds: the ExecuTorch
    export's, ONNX Runtime's (from its verification) and Core ML's (from its package)."""
    from modelbuild.delegation.report import from_json

    found = []
    for result in report.results:
        data = result.info.get("delegation")
        if result.status in SETTLED and isinstance(data, dict):
            delegation = from_json(data)
            text = delegation.sentence() + "".join(f"; {note}" for note in delegation.notes)
            found.append((result.model, result.stage.split(".", 1)[0], text))
    return found


def times(value: float | None) -> str:
    return f"{value:.2f}×" if value is not None else ""


def write_markdown(report: BuildReport, path: Path) -> None:
    from modelbuild.store.paths import replace_file

    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, to_markdown(report))


def runs_text(row: dict[str, Any]) -> str:
    """The run count, marked when ``runs: auto`` stopped before the estimate was stable: a
    person should know that figure is rougher than the others."""
    stopped = row.get("stopped", "count")
    return f"{row['runs']}" if stopped in ("count", "stable") else f"{row['runs']} ({stopped})"
