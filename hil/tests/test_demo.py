"""The README's main job, end to end: `gridcast demo`, shortened."""

from __future__ import annotations

import json
import os

import pytest

from gridcast.host import cli

pytestmark = pytest.mark.sim_only


def test_demo_runs_the_whole_system(tmp_path, capsys):
    out = tmp_path / "demo"
    code = cli.main(["demo", "--out", str(out), "--seconds", "8", "--sync-s", "10", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert result["analysis"]["scores"]["f_measure"] > 0.9
    assert [d["skew_ppm"] for d in result["devices"]] == [10, -20, 150]
    for d in result["devices"]:
        assert d["bundle_active"], d
        assert d["true_error_p99_ms"] is not None and d["true_error_p99_ms"] <= 1.0, d
        assert d["drift_p99_ms"] is not None and d["drift_p99_ms"] <= 1.0, d
        assert d["samples"] >= 10 and d["lost"] == 0, d
        # the device's own drift reports agree with the simulator's measurement
        assert abs(d["drift_p99_ms"] - d["true_error_p99_ms"]) < 0.3, d
    assert os.path.getsize(result["drift_plot"]) > 10_000
    assert result["broker"] == "mosquitto"
