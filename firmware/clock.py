"""A 64-bit microsecond clock built on the board's wrapping ticks.

ESP32 ticks_us() wraps every 2**30 us (17.9 min); only ticks_diff may compare
raw ticks. LocalClock unwraps them into a count that never wraps, as long as it
is read at least once per half period (every loop does, many times a second).
"""

TICKS_MASK = (1 << 30) - 1  # MicroPython's ticks period on every port (ticks_add wraps there)


class LocalClock:
    def __init__(self, board):
        self.board = board
        self._last = board.ticks_us()
        self._now = 0

    def now_us(self):
        raw = self.board.ticks_us()
        self._now += self.board.ticks_diff(raw, self._last)
        self._last = raw
        return self._now

    def at(self, raw):
        """The unwrapped time of a raw tick reading taken since the last now_us() (or
        shortly before it): a reading from the board, not a new one from the clock."""
        return self._now + self.board.ticks_diff(raw, self._last)

    def raw(self, t):
        """The raw tick reading at unwrapped time ``t`` (near now): ``at`` undone."""
        return (self._last + t - self._now) & TICKS_MASK
