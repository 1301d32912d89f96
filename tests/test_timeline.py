"""The device's timeline (firmware/timeline.py) on CPython: exact integer grid, rate changes."""

from __future__ import annotations

from fractions import Fraction

import pytest

from gridcast.firmware.timeline import MAX_PENDING, Timeline
from gridcast.protocol.reasons import BUSY, OK, RATE_OUT_OF_RANGE

HOUR_US = 3_600_000_000
START = 1_795_000_000_000_000  # an agent instant (Unix us)


@pytest.mark.parametrize("rate", [920_000, 940_000, 999_999, 1_000_001, 1_060_000, 1_080_000])
def test_the_grid_is_exact_to_a_microsecond_over_an_hour(rate):
    tl = Timeline()
    tl.reset(START, 0, rate)
    for p in (0, 1, 123_457, 59_999_999, HOUR_US - 1, HOUR_US):
        exact = START + Fraction(p * 1_000_000, rate)
        assert 0 <= exact - tl.agent_time(p) < 1
        # and back: the position at that instant is the beat's (within the rounding)
        assert abs(tl.position(tl.agent_time(p)) - p) <= 1


def test_a_rate_change_keeps_the_position_and_only_moves_what_follows():
    tl = Timeline()
    tl.reset(START, 0, 1_000_000)
    at = START + 10_000_000
    assert tl.change_rate(1_060_000, at, START) == OK
    assert tl.agent_time(5_000_000) == START + 5_000_000  # before the change: unchanged
    assert tl.position(at) == 10_000_000  # no jump at the change
    assert tl.agent_time(10_000_000 + 1_060_000) == at + 1_000_000  # 106 % after it
    # a second change ahead of the first replaces it
    assert tl.change_rate(940_000, START + 5_000_000, START) == OK
    assert len(tl.anchors) == 2 and tl.rate_at(at + 1) == 940_000
    tl.prune(START + 6_000_000)
    assert len(tl.anchors) == 1 and tl.position(START + 5_000_000) == 5_000_000


def test_refused_changes_leave_the_timeline_as_it_was():
    tl = Timeline()
    tl.reset(START, 0, 940_000)
    before = list(tl.anchors)
    assert tl.change_rate(919_999, START + 1, START) == RATE_OUT_OF_RANGE
    assert tl.change_rate(1_080_001, START + 1, START) == RATE_OUT_OF_RANGE
    assert tl.anchors == before
    for k in range(MAX_PENDING):
        assert tl.change_rate(1_000_000 + k, START + (k + 1) * 1_000_000, START) == OK
    pending = list(tl.anchors)
    assert tl.change_rate(1_050_000, START + 10_000_000, START) == BUSY
    assert tl.anchors == pending
