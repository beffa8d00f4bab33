"""The population stability index on distributions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from dse_platform.monitoring.drift import psi


def test_identical_distributions_have_no_drift() -> None:
    x = np.random.default_rng(0).normal(size=5000)
    assert psi(x, x) == 0.0
    same_law = np.random.default_rng(1).normal(size=5000)
    assert psi(x, same_law) < 0.02


def test_a_shifted_distribution_drifts_far_past_the_alert_threshold() -> None:
    rng = np.random.default_rng(2)
    assert psi(rng.normal(size=5000), rng.normal(loc=1.0, size=5000)) > 0.5


def test_all_mass_in_one_decile_gives_the_formula_value() -> None:
    reference = np.arange(1000, dtype=float)  # ten equal deciles
    current = np.full(100, 5.0)  # all in the first decile; the other nine are floored at 1e-4
    expected = (1 - 0.1) * np.log(1 / 0.1) + 9 * (1e-4 - 0.1) * np.log(1e-4 / 0.1)
    assert psi(reference, current) == pytest.approx(expected)


def test_a_constant_reference_is_handled() -> None:
    reference = np.full(200, 3.0)
    assert psi(reference, np.full(50, 3.0)) == 0.0
    assert psi(reference, np.array([3.0, 4.0])) == float("inf")


def test_missing_values_are_ignored_and_nothing_to_compare_is_nan() -> None:
    x = np.random.default_rng(3).normal(size=1000)
    assert psi(np.append(x, [np.nan, np.inf]), np.append(x, np.nan)) == 0.0
    assert np.isnan(psi(x, np.array([np.nan])))
    assert np.isnan(psi(np.array([]), x))
