"""Runs under MicroPython: time and heap of verifying one bundle file.

    micropython bench/device/verify_bundle.py BUNDLE KEY_HEX KEY_ID REPEATS
Prints one JSON line.
"""

import binascii
import gc
import json
import os
import sys
import time

from gridcast.protocol import bundle_reader


def main(path, key_hex, key_id, repeats):
    keys = {key_id: binascii.unhexlify(key_hex)}
    size = os.stat(path)[6]
    best_us = None
    peak_growth = 0
    for _ in range(repeats):
        gc.collect()
        before = gc.mem_alloc()
        t0 = time.ticks_us()
        with open(path, "rb") as f:
            info = bundle_reader.verify(f, size, keys, 0x000100)
        elapsed = time.ticks_diff(time.ticks_us(), t0)
        growth = gc.mem_alloc() - before  # no gc.collect() in between: all that was allocated
        peak_growth = max(peak_growth, growth)
        best_us = elapsed if best_us is None else min(best_us, elapsed)
    print(json.dumps({"size_bytes": size, "beats": info.beat_count, "verify_us_best": best_us,
                      "heap_growth_bytes": peak_growth}))


main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
