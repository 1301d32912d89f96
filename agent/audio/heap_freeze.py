"""Keep Python's full garbage collections short while audio callbacks run.

sounddevice calls the output's and the input's callbacks on PortAudio's real-time
thread, and each needs the interpreter lock. A full (generation 2) collection holds
that lock while it walks every object the collector tracks, and a process that has
imported numpy, scipy, numba, aiohttp and paho tracks hundreds of thousands: one such
collection took 85.6 ms on the 2-core development machine, four buffers of the show
output (1024 frames at 48 kHz), and was the one output xrun the show bench had in each
of three runs (bench/show.py ``full_collections_at_s_ms``; docs/player.md).

``gc.freeze()`` moves every object alive now into a permanent generation that
collections skip, so later full collections walk only what was made since. Frozen
objects are still freed by reference counting; only cycles among them are never
collected, which for modules, classes and the process's long-lived state is what
happens anyway.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_heap() -> int:
    """Before an audio stream starts: collect the garbage there is (once per process,
    while no stream of ours runs yet), then freeze what is alive. Returns the number
    of objects frozen in all."""
    if not gc.get_freeze_count():
        gc.collect()
    gc.freeze()
    count = gc.get_freeze_count()
    log.debug("audio stream: %d objects kept out of Python's collections", count)
    return count
