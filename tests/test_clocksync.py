"""The sync estimator against simulated networks with skew and asymmetric jitter."""

import os
import random
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from gridcast.firmware.clocksync import SyncEstimator


def simulate(skew_ppm, offset_us, jitter=(10000, 30000), seconds=40, rate_hz=8, seed=0):
    """Feed exchanges; return the estimator and a function giving the true theta."""
    rng = random.Random(seed)
    est = SyncEstimator()
    s = skew_ppm * 1e-6

    def agent_at(local):  # agent = local + theta(local)
        return local + offset_us + s * local

    local = 0
    for _ in range(int(seconds * rate_hz)):
        local += int(1e6 / rate_hz)
        t1 = local
        d_up, d_down = rng.uniform(*jitter), rng.uniform(*jitter)
        t2 = int(agent_at(t1 + d_up))  # arrival measured on the agent clock
        t3 = t2 + 50
        # device receives after d_down more agent-microseconds
        t4 = int(t1 + d_up + 50 + d_down)
        est.add(t1, t2, t3, t4)
    return est, local, lambda t: offset_us + s * t


@pytest.mark.parametrize("skew_ppm", [-200, -100, 0, 100, 200])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_offset_error_stays_under_half_a_millisecond_with_jitter(skew_ppm, seed):
    """20 +- 10 ms of one-way jitter, 60 s of exchanges at 8 Hz."""
    est, now, theta = simulate(skew_ppm, offset_us=123_456_789, seconds=60, seed=seed)
    for ahead_s in (0, 1, 3):
        t = now + int(ahead_s * 1e6)
        assert abs(est.offset_us(t) - theta(t)) < 500
    assert est.skew * 1e6 == pytest.approx(skew_ppm, abs=20)


def test_loopback_latency_gives_microsecond_accuracy():
    est, now, theta = simulate(150, offset_us=-42_000_000, jitter=(80, 400), seconds=30)
    assert abs(est.offset_us(now) - theta(now)) < 50


def test_a_first_estimate_comes_within_a_second():
    est, now, theta = simulate(100, offset_us=-5_000_000, seconds=1)
    assert est.synced
    assert abs(est.offset_us(now) - theta(now)) < 3000


def test_impossible_exchanges_are_rejected():
    est = SyncEstimator()
    assert not est.add(1000, 5000, 5010, 900)  # receive before send
    assert est.rejected == 1 and not est.synced


def test_a_deferred_refit_waits_for_the_owner_and_then_agrees():
    """The device defers the skew refit out of the message handler: until refit() the
    skew stays as it was; after it, the estimate equals the immediate one."""
    rng = random.Random(4)
    now_est, later_est = SyncEstimator(), SyncEstimator(defer_refit=True)
    s = 150e-6
    local, refits = 0, 0
    for _ in range(30 * 8):
        local += 125_000
        d_up, d_down = rng.uniform(2000, 6000), rng.uniform(2000, 6000)
        t2 = int(local + d_up + 7_000_000 + s * (local + d_up))
        args = (local, t2, t2 + 50, int(local + d_up + 50 + d_down))
        now_est.add(*args)
        skew_before = later_est.skew
        later_est.add(*args)
        if later_est.refit_due:
            assert later_est.skew == skew_before  # nothing fitted inside add()
            later_est.refit()
            refits += 1
            assert not later_est.refit_due
        assert later_est.skew == now_est.skew
        assert later_est.offset_us(local) == now_est.offset_us(local)
    assert refits >= 25 and now_est.skew * 1e6 == pytest.approx(150, abs=20)
