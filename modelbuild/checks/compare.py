"""Error figures between an artifact's outputs and the PyTorch reference.

Pass or fail is numpy's ``allclose`` rule, ``|got - want| <= atol + rtol * |want|`` for every
element, so a tolerance means what it means in every other tool. The relative error is taken
over elements whose reference magnitude exceeds ``atol`` only: near zero a relative error says
nothing, and ``atol`` already judges those elements.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class OutputError:
    name: str
    max_abs: float = 0.0
    max_rel: float = 0.0
    cosine: float = 1.0
    passed: bool = True
    problem: str = ""  # a shape or dtype mismatch, or non-finite values

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def compare(name: str, got: np.ndarray, want: np.ndarray, atol: float, rtol: float, unit_axes_may_differ: bool = False) -> OutputError:
    """``unit_axes_may_differ``: a shape that differs from the reference in axes of size 1 only
    is compared as the reference's (Core ML drops or adds a unit batch axis); otherwise any
    other shape fails, however equal the numbers."""
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        if unit_axes_may_differ and [d for d in got.shape if d != 1] == [d for d in want.shape if d != 1]:
            got = got.reshape(want.shape)
        else:
            return OutputError(name, float("inf"), float("inf"), 0.0, False, f"shape {list(got.shape)}, expected {list(want.shape)}")
    g = got.astype(np.float64).ravel()
    w = want.astype(np.float64).ravel()
    if not np.all(np.isfinite(g)) and np.all(np.isfinite(w)):
        return OutputError(name, float("inf"), float("inf"), 0.0, False, f"{int(np.sum(~np.isfinite(g)))} non-finite value(s)")
    diff = np.abs(g - w)
    max_abs = float(diff.max()) if diff.size else 0.0
    big = np.abs(w) > atol
    max_rel = float((diff[big] / np.abs(w[big])).max()) if np.any(big) else 0.0
    norm = float(np.linalg.norm(g) * np.linalg.norm(w))
    cosine = float(np.dot(g, w) / norm) if norm > 0 else (1.0 if max_abs == 0 else 0.0)
    passed = bool(np.all(diff <= atol + rtol * np.abs(w)))
    return OutputError(name, max_abs, max_rel, cosine, passed)


def worst(errors: list[OutputError]) -> OutputError:
    """One figure per output across every case: the largest errors, the lowest cosine."""
    first = errors[0]
    return OutputError(
        first.name,
        max(e.max_abs for e in errors),
        max(e.max_rel for e in errors),
        min(e.cosine for e in errors),
        all(e.passed for e in errors),
        next((e.problem for e in errors if e.problem), ""),
    )
