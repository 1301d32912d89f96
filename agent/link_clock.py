"""Map Ableton Link's clock onto the agent's timeline.

Link times every beat on its own clock, ``Link.clock().micros()`` (on Linux
CLOCK_MONOTONIC_RAW in µs); the agent's timeline is CLOCK_REALTIME in µs
(gridcast.agent.clock.now_us). The two differ by an offset and, because NTP slews
CLOCK_REALTIME but not the raw clock, by a small rate (tens of ppm). So the map is a
line, agent_us = agent0 + (link_us - link0) * (1 + rate), fitted by least squares over
the last few paired reads.

A paired read brackets one Link read between two agent reads and keeps, of a few
tries, the one with the smallest bracket: a try interrupted by the scheduler has a
wide bracket and is dropped, so one read costs a few µs and is good to about 1 µs.
A read that falls far off the line (CLOCK_REALTIME stepped: NTP or an operator set
the time) starts the fit afresh, so the map follows the step at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# Tries per paired read; of them the narrowest bracket is kept.
_TRIES = 7
# A bracket wider than this (µs) means every try was interrupted: the read is dropped.
_MAX_BRACKET_US = 200
# A read this far (µs) off the fitted line is a clock step, not noise: refit from it.
_STEP_US = 2000
# NTP slews CLOCK_REALTIME by at most 500 ppm; a fitted rate beyond this is noise.
_MAX_RATE = 1000e-6


@dataclass(frozen=True)
class ClockPair:
    """One paired read: a Link instant and the agent instant it corresponds to (µs)."""

    link_us: int
    agent_us: float
    bracket_us: int


def paired_read(link_micros: Callable[[], int], agent_now_us: Callable[[], int],
                tries: int = _TRIES) -> ClockPair:
    """The narrowest of ``tries`` agent-Link-agent brackets, as one pair."""
    best: ClockPair | None = None
    for _ in range(tries):
        before = agent_now_us()
        link_us = link_micros()
        after = agent_now_us()
        pair = ClockPair(link_us, (before + after) / 2, after - before)
        if best is None or pair.bracket_us < best.bracket_us:
            best = pair
    assert best is not None  # tries >= 1
    return best


class LinkClockMap:
    """A fitted line from Link µs to agent µs, re-estimated with ``update()``.

    ``update()`` takes one paired read when ``interval_us`` has passed since the last
    (call it as often as you like); the fit uses the last ``window`` reads. Until two
    reads exist the map is a pure offset.
    """

    def __init__(self, link_micros: Callable[[], int], agent_now_us: Callable[[], int],
                 interval_us: int = 250_000, window: int = 40) -> None:
        self._link_micros = link_micros
        self._agent_now_us = agent_now_us
        self.interval_us = interval_us
        self._pairs: deque[ClockPair] = deque(maxlen=window)
        self._link0 = 0.0
        self._agent0 = 0.0
        self._rate = 0.0
        self.steps = 0  # clock steps seen (fit restarted)
        self.dropped = 0  # reads dropped for a wide bracket
        self.update(force=True)

    @property
    def rate_ppm(self) -> float:
        """How much faster the agent clock runs than Link's, in parts per million."""
        return self._rate * 1e6

    @property
    def samples(self) -> int:
        return len(self._pairs)

    def update(self, force: bool = False) -> bool:
        """Take a paired read if one is due (or ``force``); True when the fit changed."""
        due = not self._pairs or self._link_micros() - self._pairs[-1].link_us >= self.interval_us
        if not (due or force):
            return False
        pair = paired_read(self._link_micros, self._agent_now_us)
        if pair.bracket_us > _MAX_BRACKET_US and self._pairs:
            self.dropped += 1
            return False
        if self._pairs and abs(self.to_agent_us(pair.link_us) - pair.agent_us) > _STEP_US:
            self.steps += 1
            self._pairs.clear()
        self._pairs.append(pair)
        self._fit()
        return True

    def to_agent_us(self, link_us: float) -> float:
        """The agent instant (µs) of Link instant ``link_us``."""
        return self._agent0 + (link_us - self._link0) * (1.0 + self._rate)

    def to_link_us(self, agent_us: float) -> float:
        """The Link instant (µs) of agent instant ``agent_us``."""
        return self._link0 + (agent_us - self._agent0) / (1.0 + self._rate)

    def _fit(self) -> None:
        pairs = self._pairs
        n = len(pairs)
        # Centre on the means so the sums stay small (µs since 1970 squared would not).
        link_mean = sum(p.link_us for p in pairs) / n
        agent_mean = sum(p.agent_us for p in pairs) / n
        self._link0, self._agent0 = link_mean, agent_mean
        if n < 2:
            self._rate = 0.0
            return
        sxx = sum((p.link_us - link_mean) ** 2 for p in pairs)
        sxy = sum((p.link_us - link_mean) * (p.agent_us - agent_mean) for p in pairs)
        # Reads closer together than 1 ms in total say nothing about the rate.
        rate = sxy / sxx - 1.0 if sxx > 1e6 else 0.0
        self._rate = min(max(rate, -_MAX_RATE), _MAX_RATE)
