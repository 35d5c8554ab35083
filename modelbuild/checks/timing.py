"""Latency statistics from timed runs: what a person pastes into a PR."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def timed_runs(run: Callable[[], Any], warmup: int, runs: int) -> list[float]:
    """Milliseconds per call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


def interleaved(runs: dict[str, Callable[[], Any]], warmup: int, count: int) -> dict[str, list[float]]:
    """Time several callables in turns, so drift (thermal, other load) hits them alike."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(count):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - started) * 1000.0)
    return samples


MIN_RUNS = 5  # below this, a spread cannot be estimated
MAX_RUNS = 1000
STABLE = 0.01  # stop when the mean is known to 1% (its standard error relative to it)


def adaptive(
    runs: dict[str, Callable[[], Any]], warmup: int, budget_s: float, report: Callable[[int, float], None] | None = None
) -> tuple[dict[str, list[float]], str]:
    """``benchmark.runs: auto``: interleaved rounds until every mean is stable (standard error
    within 1% of it), the time budget is spent, or MAX_RUNS; at least MIN_RUNS rounds either
    way, as timeit's autorange and pyperf do. Returns the samples and what stopped them
    ("stable", "budget" or "limit"), which the report shows beside the figures. ``report`` hears
    the rounds done and the seconds spent after each round (the live display's progress)."""
    started = time.perf_counter()
    for _ in range(warmup):
        for run in runs.values():
            run()
        if time.perf_counter() - started > budget_s / 4:
            break  # a slow model: warming up must not eat the budget
    samples: dict[str, list[float]] = {name: [] for name in runs}
    while True:
        for name, run in runs.items():
            begun = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - begun) * 1000.0)
        count = len(next(iter(samples.values())))
        if report is not None:
            report(count, time.perf_counter() - started)
        if count < MIN_RUNS:
            continue
        if all(_stable(series) for series in samples.values()):
            return samples, "stable"
        if time.perf_counter() - started >= budget_s:
            return samples, "budget"
        if count >= MAX_RUNS:
            return samples, "limit"


def _stable(series: list[float]) -> bool:
    mean = statistics.fmean(series)
    return mean > 0 and statistics.stdev(series) / (len(series) ** 0.5) <= STABLE * mean


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        index = min(len(ordered) - 1, max(0, round(p * (len(ordered) - 1))))
        return ordered[index]

    return {
        "mean_ms": statistics.fmean(ordered),
        "std_ms": statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "min_ms": ordered[0],
        "runs": len(ordered),
    }
