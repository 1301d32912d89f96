"""|drift| statistics, in one place: every report of how far a device is off uses these.

Drift samples are signed integer microseconds: what a device measured of its own
error (telemetry ``drift_us``), or the bench's true error of an LED frame. The
figures are percentiles of the absolute value, in microseconds for storage and in
milliseconds (four decimals, None when there are no samples) for people and JSON.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def absolute(drift_us: Iterable[int] | np.ndarray) -> np.ndarray:
    """|drift| as int64 microseconds."""
    return np.abs(np.asarray(drift_us if isinstance(drift_us, np.ndarray) else list(drift_us),
                             dtype=np.int64))


def percentiles_us(drift_us: Iterable[int] | np.ndarray, qs: Iterable[float]) -> list[int]:
    """Percentiles of |drift| in whole microseconds (empty input: ValueError)."""
    a = absolute(drift_us)
    if not a.size:
        raise ValueError("no drift samples")
    return [int(v) for v in np.percentile(a, list(qs))]


def percentile_ms(drift_us: Iterable[int] | np.ndarray, q: float) -> float | None:
    """The q-th percentile of |drift| in ms (4 decimals); None without samples."""
    a = absolute(drift_us)
    return round(float(np.percentile(a, q)) / 1000, 4) if a.size else None


def summary_ms(drift_us: Iterable[int] | np.ndarray, prefix: str = "drift") -> dict:
    """``{prefix}_p50_ms``, ``{prefix}_p99_ms``, ``{prefix}_max_ms`` of |drift|."""
    a = absolute(drift_us)
    return {f"{prefix}_p50_ms": percentile_ms(a, 50), f"{prefix}_p99_ms": percentile_ms(a, 99),
            f"{prefix}_max_ms": percentile_ms(a, 100)}
