"""The one terminal object: it owns the rich console; views return renderables, never print.

rich is imported lazily so that ``--help`` and ``check`` stay fast.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from typing import Any, Callable, Iterator

from modelbuild.graph.node import StageNode
from modelbuild.report import BuildReport, StageResult, Status
from modelbuild.report.bench import runs_text
from modelbuild.report.bench import times as _times
from modelbuild.report.reasons import human_size

_TQDM = re.compile(r"^(?P<what>[^:|]{1,60}):\s*(?P<percent>\d{1,3})%\|")
_PROGRESS = re.compile(r"progress: (?P<text>.{1,80})$")


def stage_progress(log: Any) -> str | None:
    """How far along a running stage is, from the end of its log: coremltools' progress bars
    (tqdm, "Running MIL default pipeline: 45%|...") or a stage's own "progress: ..." line
    (benchmarks). None when the log says nothing of the kind."""
    try:
        with open(log, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 2048))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    for segment in reversed(re.split(r"[\r\n]+", tail)):
        segment = segment.strip()
        bar = _TQDM.match(segment)
        if bar:
            return f"{bar['what'].strip()} {bar['percent']}%"
        own = _PROGRESS.search(segment)
        if own:
            return own["text"]
    return None


STATUS_STYLE = {
    Status.BUILT: "green",
    Status.CACHED: "dim",
    Status.REMOTE: "blue",
    Status.FAILED: "bold red",
    Status.BLOCKED: "yellow",
    Status.NOT_RUN: "yellow",
    Status.SKIPPED: "yellow",
    Status.WOULD_RUN: "cyan",
}
VERDICT_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow"}


class Terminal:
    def __init__(self, file: Any = None, force_plain: bool | None = None) -> None:
        from rich.console import Console

        self.console = Console(file=file or sys.stdout, highlight=False, markup=False, soft_wrap=False)
        self.plain = force_plain if force_plain is not None else not self.console.is_terminal
        if self.plain:
            # Logs and CI pages are wide; rich's 80-column default would fold every reason.
            self.console.width = 150
        self._live: Any = None
        self._logs: Any = None  # build/: where each running stage's log tells how far along it is
        self._running: dict[str, float] = {}
        self._done = 0
        self._total = 0

    # -- progress ---------------------------------------------------------------------------

    def start_progress(self, total: int, out_dir: Any = None) -> None:
        self._total = total
        self._logs = out_dir
        if not self.plain:
            from rich.live import Live

            self._live = Live(self._progress_view(), console=self.console, refresh_per_second=8, transient=True)
            self._live.start()

    def stop_progress(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def on_event(self, event: str, node: StageNode, result: StageResult | None) -> None:
        if event == "start":
            self._running[node.id] = time.perf_counter()
            if self.plain:
                self.console.print(f"[{node.model}] {node.stage}: running ({self._reason(node)})")
        elif result is not None:
            self._running.pop(node.id, None)
            self._done += 1
            if self.plain and result.status in (Status.BUILT, Status.FAILED, Status.REMOTE):
                extra = {Status.BUILT: f" in {result.seconds:.1f}s", Status.FAILED: f": {result.error}"}.get(result.status, f" ({result.reason})")
                self.console.print(f"[{node.model}] {node.stage}: {result.status}{extra}")
        if self._live is not None:
            self._live.update(self._progress_view())

    def _reason(self, node: StageNode) -> str:
        return "stale"

    def _progress_view(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        waiting = max(self._total - self._done - len(self._running), 0)
        table.add_row(f"modelbuild: {self._done}/{self._total} stages settled, {len(self._running)} running, {waiting} waiting")
        now = time.perf_counter()
        for nid, started in self._running.items():
            model, stage = nid.split(":", 1)
            along = stage_progress(self._logs / model / "logs" / f"{stage}.log") if self._logs is not None else None
            table.add_row(Spinner("dots", text=f"{model} · {stage} ({now - started:.0f}s)" + (f" · {along}" if along else "")))
        return table

    # -- views ------------------------------------------------------------------------------

    def summary(self, report: BuildReport, title: str = "modelbuild", verbose: bool = True) -> Any:
        """The stage table: every stage with ``verbose``, else only those that did something
        (ran, failed, were skipped or would run) — a cached stage has nothing to say, and its
        figures are in the verify, size and bench tables."""
        from rich.table import Table
        from rich.text import Text

        results = report.results if verbose else [r for r in report.results if r.status != Status.CACHED]
        if not results:
            return None
        table = Table(title=title, title_justify="left", show_lines=False)
        for column in ("model", "stage", "status", "seconds", "size", "why"):
            table.add_column(column, justify="right" if column in ("seconds", "size") else "left", overflow="fold", max_width=70 if column == "why" else None)
        for r in results:
            why = Text(r.error if r.status == Status.FAILED and r.error else r.reason)
            if r.info.get("summary"):
                # Figures (verify errors, latencies) show on cached rows too: they are the point.
                why.append("\n" + r.info["summary"], style=VERDICT_STYLE.get(r.info.get("verdict", ""), ""))
            if r.info.get("patch_refused") and r.status == Status.BUILT:
                why.append(f"\n· converted in full, not patched: {r.info['patch_refused']}")
            if r.notes and r.status in (Status.BUILT, Status.FAILED):
                why.append("\n" + "\n".join(f"· {n}" for n in r.notes[:4]) + (f"\n· … {len(r.notes) - 4} more in report.json" if len(r.notes) > 4 else ""))
            table.add_row(
                r.model,
                r.stage,
                Text(r.status, style=STATUS_STYLE.get(r.status, "")),
                f"{r.seconds:.2f}" if r.status in (Status.BUILT, Status.FAILED) else "",
                human_size(r.size),
                why,
            )
        return table

    def verify_table(self, report: BuildReport) -> Any | None:
        """Each artifact's verification, built now or cached: what a person checks after a build."""
        from rich.table import Table
        from rich.text import Text

        rows = [r for r in report.by_role("verify") if r.info.get("summary")]
        if not rows:
            return None
        table = Table(title="verified against PyTorch", title_justify="left")
        for column in ("model", "target", "verdict", "figures"):
            table.add_column(column, overflow="fold", max_width=100 if column == "figures" else None)
        for r in rows:
            verdict = r.info.get("verdict", "")
            table.add_row(r.model, r.stage.removesuffix(".verify"), Text(verdict, style=VERDICT_STYLE.get(verdict, "")), r.info["summary"])
        return table

    def nothing_to_do(self, report: BuildReport, title: str) -> str | None:
        """One line when every stage was cached and nothing went wrong (a no-op build)."""
        if report.warnings or any(r.status != Status.CACHED for r in report.results):
            return None
        return f"{title}: nothing to do, {len(report.results)} stages up to date ({report.seconds:.2f}s)"

    def size_table(self, report: BuildReport) -> Any | None:
        """Compressed and quantised artifacts against their float versions (nothing when none)."""
        from rich.table import Table
        from rich.text import Text

        from modelbuild.report.sizes import size_rows

        rows = size_rows(report)
        if not rows:
            return None
        table = Table(title="sizes against float", title_justify="left")
        for column in ("model", "target", "size", "float", "ratio", "max abs error", "verify"):
            table.add_column(column, justify="left" if column in ("model", "target", "verify") else "right")
        for row in rows:
            error = "" if row["max_abs"] is None else f"{row['max_abs']:.3g}"
            table.add_row(
                row["model"],
                row["target"],
                human_size(row["size"]),
                f"{human_size(row['float_size'])} ({row['float_from']})",
                f"{row['ratio']:.0%}",
                error,
                Text(row["verdict"] or "", style=VERDICT_STYLE.get(row["verdict"] or "", "")),
            )
        return table

    def bench_table(self, report: BuildReport) -> Any:
        """One row per model × backend × shape, from the bench stages of ``report``."""
        from rich.table import Table

        from modelbuild.report.bench import bench_rows, several_thread_counts, skipped_backends, variant_verdicts

        rows = bench_rows(report)
        many = several_thread_counts(rows)
        table = Table(title="modelbuild bench", title_justify="left")
        columns = ("model", "backend", "shape", *(("threads",) if many else ()), "mean ± std ms", "p50", "p90", "min", "runs", "size")
        for column in (*columns, "torch, same run", "vs torch", "vs float"):
            if column in ("model", "backend", "shape"):
                # Names are never cut ("image=1×3×51…" hid the shape); the figures wrap instead.
                widest = max([len(column), *(len(str(row[column])) for row in rows)])
                table.add_column(column, justify="left", no_wrap=True, min_width=widest)
            else:
                table.add_column(column, justify="right")
        for row in rows:
            table.add_row(
                row["model"],
                row["backend"],
                row["shape"],
                *((str(row.get("threads", 1)),) if many else ()),
                f"{row['mean_ms']:.3f} ± {row['std_ms']:.3f}",
                f"{row['p50_ms']:.3f}",
                f"{row['p90_ms']:.3f}",
                f"{row['min_ms']:.3f}",
                runs_text(row),
                human_size(row.get("size")),
                f"{row['torch_mean_ms']:.3f}",
                f"{row['speedup']:.2f}×",
                _times(row.get("vs_float")),
            )
        caption = [f"  {line}" for line in variant_verdicts(rows)]
        caption = (["variants against their float versions:"] + caption) if caption else []
        skipped = skipped_backends(report)
        if skipped:
            caption += ["not benchmarked here:"] + [f"  {m} · {b}: {why}" for m, b, why in skipped]
        if caption:
            table.caption = "\n".join(caption)
            table.caption_justify = "left"
        return table

    def totals(self, report: BuildReport) -> str:
        counts: dict[str, int] = {}
        for r in report.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        line = f"{parts} in {report.seconds:.2f}s"
        traffic = report.remote
        if traffic and (traffic["fetched"] or traffic["pushed"]):
            moved = [f"fetched {traffic['fetched']} ({human_size(traffic['fetched_bytes'])})"] if traffic["fetched"] else []
            moved += [f"pushed {traffic['pushed']} ({human_size(traffic['pushed_bytes'])})"] if traffic["pushed"] else []
            line += f"; remote {traffic['url']}: {', '.join(moved)}"
        return line

    def failures(self, report: BuildReport, verbose: bool) -> list[str]:
        lines = []
        for r in report.by_status(Status.FAILED):
            if r.error_kind == "user":
                lines.append(f"error: {r.error}")
            else:
                lines.append(f"{r.model}: {r.stage} failed: {r.error}" + (f" (log: {r.log})" if r.log else ""))
            if verbose and r.traceback:
                lines.append(r.traceback)
        return lines

    @contextlib.contextmanager
    def counter(self, total: int, description: str) -> Iterator[Callable[[int], None]]:
        """A progress bar for an explicit sync (``cache push/pull/verify --remote``); silent
        when the output is not a terminal."""
        if self.plain:
            yield lambda done: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(description, total=total)
            yield lambda done: progress.advance(task, done)

    def print(self, renderable: Any = "") -> None:
        self.console.print(renderable)

    def error(self, message: str) -> None:
        # Plain text: error lines are grepped and pasted; rich would wrap them at 80 columns.
        print(message, file=sys.stderr, flush=True)
