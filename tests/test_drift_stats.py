"""The one place |drift| statistics are computed (agent/drift_stats.py)."""

import numpy as np
import pytest

from gridcast.agent import drift_stats


def test_percentiles_are_of_the_absolute_value_in_ms():
    drift = [-3000, 1000, -2000, 4000]
    assert drift_stats.percentile_ms(drift, 100) == 4.0
    assert drift_stats.percentile_ms(drift, 0) == 1.0
    assert drift_stats.percentile_ms(drift, 50) == pytest.approx(2.5)


def test_no_samples_gives_none_not_an_error():
    assert drift_stats.percentile_ms([], 99) is None
    assert drift_stats.summary_ms([], "true_error") == {
        "true_error_p50_ms": None, "true_error_p99_ms": None, "true_error_max_ms": None}


def test_microsecond_percentiles_for_storage():
    values = np.arange(-100, 101)
    p50, p99, top = drift_stats.percentiles_us(values, (50, 99, 100))
    assert (p50, p99, top) == (50, 99, 100)
    with pytest.raises(ValueError):
        drift_stats.percentiles_us([], (50,))


def test_ms_figures_round_to_a_microsecond_tenth():
    assert drift_stats.percentile_ms([1234567], 50) == 1234.567
    assert drift_stats.summary_ms([-1500, 500])["drift_max_ms"] == 1.5
