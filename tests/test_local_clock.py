"""The firmware's unwrapping clock: raw ticks and unwrapped time convert both ways across
the 2**30 wrap (the simulated board logs each beat's delay from a raw due tick)."""

from __future__ import annotations

from gridcast.firmware.clock import TICKS_MASK, LocalClock

PERIOD = TICKS_MASK + 1


class WrappingBoard:
    """ticks_us and ticks_diff as MicroPython has them, on a settable counter."""

    def __init__(self, start: int) -> None:
        self.count = start

    def ticks_us(self) -> int:
        return self.count & TICKS_MASK

    def ticks_diff(self, a: int, b: int) -> int:
        return ((a - b + PERIOD // 2) & TICKS_MASK) - PERIOD // 2


def test_raw_undoes_at_across_the_wrap() -> None:
    board = WrappingBoard(PERIOD - 3_000)  # 3 ms before the wrap
    clock = LocalClock(board)
    board.count += 1_000
    now = clock.now_us()
    assert now == 1_000
    for ahead in (0, 1_999, 2_000, 2_001, 50_000, -500):  # the due tick on both sides
        raw = clock.raw(now + ahead)
        assert 0 <= raw <= TICKS_MASK
        assert raw == (board.count + ahead) & TICKS_MASK
        assert clock.at(raw) == now + ahead
    board.count += 10_000  # past the wrap: the raw tick is small, the unwrapped time is not
    late = board.ticks_diff(board.ticks_us(), clock.raw(now + 2_500))
    assert late == 7_500
