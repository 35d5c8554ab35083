"""Error figures: the allclose rule, relative error only where it means something, shape checks."""

from __future__ import annotations

import numpy as np

from modelbuild.checks.compare import compare, worst


def test_identical_outputs_pass_with_zero_error() -> None:
    a = np.linspace(-1, 1, 100, dtype=np.float32)
    error = compare("y", a, a.copy(), atol=1e-3, rtol=1e-3)
    assert error.passed and error.max_abs == 0 and error.max_rel == 0 and abs(error.cosine - 1) < 1e-12


def test_allclose_rule_decides_pass_and_fail() -> None:
    want = np.array([1.0, 100.0])
    assert compare("y", want + [0.0025, 0.05], want, atol=1e-3, rtol=1e-3).passed is False  # 0.0025 > 1e-3 + 1e-3*1
    assert compare("y", want + [0.0019, 0.1], want, atol=1e-3, rtol=1e-3).passed is True  # within atol + rtol*|want|


def test_relative_error_ignores_near_zero_references() -> None:
    error = compare("y", np.array([1e-6, 2.0]), np.array([1e-9, 1.0]), atol=1e-3, rtol=1e-3)
    assert error.max_rel == 1.0  # only the element of magnitude 1 counts; 1e-9 would give 999


def test_shape_mismatch_fails_with_a_reason_but_unit_axes_are_tolerated_where_the_runtime_says() -> None:
    bad = compare("y", np.zeros((2, 3)), np.zeros((3, 3)), 1e-3, 1e-3)
    assert not bad.passed and bad.problem == "shape [2, 3], expected [3, 3]"
    assert compare("y", np.zeros((1, 3)), np.zeros(3), 1e-3, 1e-3, unit_axes_may_differ=True).passed  # Core ML's batch axis
    # Elsewhere an output shaped (1, 4, 1) where PyTorch gives (1, 1, 4) is a different interface.
    moved = compare("y", np.arange(4.0).reshape(1, 4, 1), np.arange(4.0).reshape(1, 1, 4), 1e-3, 1e-3)
    assert not moved.passed and moved.problem == "shape [1, 4, 1], expected [1, 1, 4]"
    transposed = compare("y", np.zeros((6, 4)), np.zeros((4, 6)), 1e-3, 1e-3)  # same size, wrong layout
    assert not transposed.passed and transposed.problem == "shape [6, 4], expected [4, 6]"


def test_non_finite_output_fails() -> None:
    error = compare("y", np.array([np.nan, 1.0]), np.array([0.0, 1.0]), 1e-3, 1e-3)
    assert not error.passed and "non-finite" in error.problem


def test_cosine_sees_a_sign_flip() -> None:
    a = np.arange(1, 10, dtype=np.float64)
    assert compare("y", -a, a, 1.0, 1.0).cosine < -0.99


def test_worst_takes_the_largest_errors_across_cases() -> None:
    errors = [compare("y", np.array([1.0]), np.array([1.0]), 1e-3, 1e-3), compare("y", np.array([1.5]), np.array([1.0]), 1e-3, 1e-3)]
    total = worst(errors)
    assert total.max_abs == 0.5 and total.passed is False
