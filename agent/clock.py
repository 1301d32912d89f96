"""The agent's timeline: microseconds of CLOCK_REALTIME (Unix time).

Devices schedule beats on this timeline; the simulator stamps LED output with
the same clock, so the bench compares like with like.
"""

import time


def now_us() -> int:
    return time.time_ns() // 1000
