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
